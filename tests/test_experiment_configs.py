"""Every experiments/*.py config, at every argument value its ARGS table lists, loads through the
CLI's loader (`train.launch.load_config`) and passes the library's `validate_config`; bad
arguments, overrides and configs fail with an error that names what is wrong."""

import importlib.util
import itertools
import json
import pathlib
import re

import pytest

from andesvl_jax.configs import Arg, ConfigArgError, base_config, model_config, parse_config_arg
from andesvl_jax.convert.workdir import load_run_config
from andesvl_jax.train.config_checks import validate_config
from andesvl_jax.train.launch import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.py"))


def _module(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {path.stem: _module(path) for path in EXPERIMENTS}


def _cases() -> list[tuple[str, str]]:
    """(experiment, arg): the defaults, each listed value alone, and every combination of the
    arguments with choices."""
    out = []
    for name, module in MODULES.items():
        table = getattr(module, "ARGS", {})
        args = [""] + [f"{k}={v}" for k, a in table.items() for v in a.values()]
        choice = [[f"{k}={v}" for v in a.choices] for k, a in table.items() if a.choices]
        args += [",".join(combo) for combo in itertools.product(*choice) if len(combo) > 1]
        out += [(name, arg) for arg in dict.fromkeys(args)]
    return out


def _load(name: str, arg: str, overrides=()):
    """The config as `andesvl-jax train --config experiments/NAME.py:ARG` builds it, with the
    fields the file says the command line must set (REQUIRED) at their example values."""
    required = getattr(MODULES[name], "REQUIRED", {})
    extra = [f"--config.{k}={v}" for k, v in required.items()]
    return load_config(f"{ROOT / 'experiments' / name}.py:{arg}", [*extra, *overrides])


def test_every_experiment_declares_its_arguments():
    assert EXPERIMENTS, "no experiments/*.py found"
    for name, module in MODULES.items():
        table = getattr(module, "ARGS", None)
        assert table and all(isinstance(a, Arg) for a in table.values()), (
            f"experiments/{name}.py: declare its arguments in a module-level ARGS table "
            "(andesvl_jax/configs/args.py Arg)"
        )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstring_documents_exactly_the_declared_arguments(name):
    """The docstring's `Args` paragraph names every ARGS key, and no other."""
    doc = MODULES[name].__doc__ or ""
    paragraph = next((p for p in doc.split("\n\n") if p.lstrip().startswith("Args")), "")
    documented = set(re.findall(r"(?<![.\w-])(\w+)=", paragraph))
    assert documented == set(MODULES[name].ARGS), (name, documented)


@pytest.mark.parametrize(("name", "arg"), _cases())
def test_experiment_config_loads_and_validates(name, arg):
    config = _load(name, arg)
    validate_config(config)
    parsed = parse_config_arg(arg, MODULES[name].ARGS, name)
    if "stage" in parsed:
        assert config.stage == parsed["stage"]
    model_config(config)  # the model it names builds (validate_config checks it too)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_argument_changes_the_config(name):
    """An argument the file parses but ignores would load and validate; it must change something."""
    default = _load(name, "").to_json()
    for key, a in MODULES[name].ARGS.items():
        for value in a.values():
            if value != a.default:
                assert _load(name, f"{key}={value}").to_json() != default, (name, key, value)


def test_unknown_or_malformed_argument_is_a_clear_error():
    with pytest.raises(SystemExit, match=r"experiments/tiny.py:stag=sft: unknown argument 'stag'"):
        _load("tiny", "stag=sft")
    with pytest.raises(SystemExit, match=r"'stage' is not key=value"):
        _load("tiny", "stage")
    with pytest.raises(SystemExit, match=r"stage='pretrain' is not one of align\|"):
        _load("andesvl", "size=1b,stage=pretrain")
    with pytest.raises(SystemExit, match=r"steps='many' is not a valid int"):
        _load("ablations", "steps=many")
    with pytest.raises(ConfigArgError, match="given twice"):
        parse_config_arg("seed=1,seed=2", MODULES["ablations"].ARGS, "ablations.py")


def test_unknown_stage_or_field_fails_validation():
    with pytest.raises(ValueError, match=r"config.stage='pretrain' unknown"):
        validate_config(_load("tiny", "", ["--config.stage=pretrain"]))
    with pytest.raises(ValueError, match=r"config.data.stage='demo2' unknown"):
        validate_config(_load("tiny", "", ["--config.data.stage=demo2"]))
    config = _load("tiny", "")
    with config.unlocked():
        config.data.mixture = {"counting": 1.0}
    with pytest.raises(ValueError, match=r"unknown synthetic tasks \['counting'\]"):
        validate_config(config)
    with pytest.raises(SystemExit, match="Did you mean"):  # config_flags: not in the schema
        _load("tiny", "", ["--config.model.vision.use_rope=False"])
    with pytest.raises(ValueError, match=r"config.model: .*heads"):  # the model does not build
        validate_config(_load("tiny", "", ["--config.model.text.num_kv_heads=3"]))


def test_a_config_that_fails_validation_fails():
    """The checks the loading test relies on do fail: a real-data experiment without its path,
    a section replaced by a dict (dropping fields), an unknown key, 0 for an unset budget."""
    with pytest.raises(ValueError, match=r"set config.data.path"):
        validate_config(load_config(f"{ROOT / 'experiments' / 'andesvl'}.py:stage=sft", []))
    c = base_config()
    c.mesh = {"data": 1, "fsdp": -1, "tensor": 1}
    with pytest.raises(ValueError, match=r"\['mesh.dcn_data'\] missing"):
        validate_config(c)
    c = base_config()
    c.optim.learning_rate = 1e-3
    with pytest.raises(ValueError, match=r"unknown config keys \['optim.learning_rate'\]"):
        validate_config(c)
    c = base_config()
    c.data.max_tokens = 0
    with pytest.raises(ValueError, match=r"data.max_tokens must be positive \(or unset"):
        validate_config(c)


def test_unset_fields_are_none_and_cli_overrides_still_type_check():
    config = _load("tiny", "stage=joint")
    assert config.init.from_pretrained is None and config.init.from_stage_workdir is None
    assert config.peak_flops is None and config.grpo.epsilon_high is None
    config = _load(
        "tiny",
        "stage=joint",
        [
            "--config.init.from_pretrained=/models/AndesVL-1B",
            "--config.data.max_tokens=4096",
            "--config.grpo.epsilon_high=0.28",
        ],
    )
    assert config.init.from_pretrained == "/models/AndesVL-1B"
    assert config.data.max_tokens == 4096 and config.grpo.epsilon_high == 0.28
    with pytest.raises(SystemExit, match="max_tokens"):
        _load("tiny", "", ["--config.data.max_tokens=lots"])


def test_nested_model_fields_from_the_cli():
    config = _load(
        "tiny",
        "",
        ["--config.model.vision.use_rope2d=False", "--config.model.text.num_layers=1"],
    )
    model = model_config(config)
    assert model.vision.use_rope2d is False and model.text.num_layers == 1
    assert model.scan_layers is False  # tiny.py's setting; the rest is the preset's
    assert model.vision.hidden_size == 64 and model.pixel_shuffle is True


def test_saved_run_config_rebuilds_the_same_model(tmp_path):
    """The RoPE-off ablation reloads from its workdir's config.json with no preset registered."""
    config = _load("ablations", "rope2d=off,shuffle=off")
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    reloaded = model_config(load_run_config(tmp_path))
    assert reloaded == model_config(config)
    assert reloaded.vision.use_rope2d is False and reloaded.pixel_shuffle is False


def test_run_configs_written_before_the_model_schema_still_load(tmp_path):
    """Older workdirs kept model fields in a flat `model.overrides`."""
    saved = json.loads(base_config().to_json_best_effort())
    saved["model"] = {"preset": "tiny", "overrides": {"scan_layers": False, "remat": "full"}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    model = model_config(load_run_config(tmp_path))
    assert model.scan_layers is False and model.remat == "full"

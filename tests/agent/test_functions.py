"""Function files: the phone APIs load; bad files fail naming the file, the entry and the field."""

import json

import pytest

from andesvl_jax.agent.functions import FunctionFileError, load_functions, parse_functions


def test_phone_functions_are_the_ten_octopus_apis(registry):
    assert len(registry) == 10
    assert registry.names[0] == "send_email" and registry.names[-1] == "pet_care"
    assert registry.get("amazon_shopping").arguments[1].maximum == 9


def _fn(**over):
    f = {"name": "f", "description": "does f", "arguments": [{"name": "a", "type": "string"}]}
    f.update(over)
    return f


@pytest.mark.parametrize(
    "functions, message",
    [
        ([_fn(), _fn()], "duplicate function name"),
        ([_fn(arguments=[{"name": "a", "type": "float64"}])], "unknown argument type 'float64'"),
        (
            [_fn(arguments=[{"name": "a", "type": "integer", "enum": ["1"]}])],
            "enum is only allowed",
        ),
        ([_fn(arguments=[{"name": "a", "type": "string", "format": "ipv6"}])], "format 'ipv6'"),
        ([_fn(arguments=[{"name": "a", "type": "string", "enum": ["x'y"]}])], "quote or newline"),
        ([_fn(description="")], "non-empty description"),
        ([_fn(name="two words")], "must be an identifier"),
        (
            [_fn(arguments=[{"name": "a", "type": "integer", "minimum": 5, "maximum": 1}])],
            "minimum 5",
        ),
        ([], "non-empty list"),
    ],
)
def test_bad_function_files_fail_clearly(tmp_path, functions, message):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(functions))
    with pytest.raises(FunctionFileError, match=message) as e:
        load_functions(path)
    assert str(path) in str(e.value)


def test_unreadable_json_names_the_file(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("{not json")
    with pytest.raises(FunctionFileError, match="f.json"):
        load_functions(path)


def test_yaml_files_load(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump({"functions": [_fn()]}))
    assert load_functions(path).names == ["f"]


def test_object_form_equals_list_form():
    assert parse_functions({"functions": [_fn()]}) == parse_functions([_fn()])

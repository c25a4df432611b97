"""One process of tests/train/test_multihost.py, on a (data=2, fsdp=2, tensor=2) mesh (multi-slice
when there are two processes: one slice per process, `mesh.dcn_data`).

usage: multihost_worker.py MODE PROCESS_ID NUM_PROCESSES PORT OUT
MODE sft: 3 train steps; every process packs the same global batches (the data pipeline is told it
is the only process) and feeds only its own rows, so the global batch is identical whatever the
number of processes. OUT: a JSON file.
MODE grpo: 2 GRPO steps through the training loop (`train`), each process sampling its share of
the rollout groups (train/rollouts.py); the reward is the completion's length, which a random
model varies, so the advantages are not zero. OUT: the run's workdir.
"""

import json
import pathlib
import sys

MESH = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
SFT = [
    "--config.steps=3",
    "--config.data.batch_size=8",
    "--config.data.max_tokens=128",
    "--config.data.max_patches=128",
    "--config.data.image_max_size=84",
    "--config.data.max_side=84",
    "--config.data.worker_count=0",
]
GRPO = [
    "--config.steps=2",
    "--config.grpo.prompts_per_rollout=2",
    "--config.grpo.group_size=4",
    "--config.grpo.max_new_tokens=8",
    "--config.log_every=1",
    "--config.tensorboard=False",
    "--config.progress=False",
]


def grpo(num_processes: int, workdir: str) -> None:
    import ml_collections

    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import train
    from andesvl_jax.train.rewards import register_reward

    @register_reward("completion_chars")
    def completion_chars(completion: str, sample_meta: dict) -> float:
        return min(len(completion), 200) / 200

    slices = [f"--config.mesh.dcn_data={num_processes}"]
    config = load_config("experiments/tiny.py:stage=grpo", MESH + GRPO + slices)
    config.grpo.rewards = ml_collections.ConfigDict({"completion_chars": 1.0})
    train(config, pathlib.Path(workdir))


def main(mode: str, process_id: int, num_processes: int, port: str, out: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if num_processes > 1:
        jax.distributed.initialize(f"localhost:{port}", num_processes, process_id)
    if mode == "grpo":
        return grpo(num_processes, out)

    from andesvl_jax.configs import model_config
    from andesvl_jax.sharding import DEFAULT_RULES, make_mesh
    from andesvl_jax.train.launch import load_config
    from andesvl_jax.train.loop import global_batch, initial_state, training_data
    from andesvl_jax.train.objectives import next_token_objective
    from andesvl_jax.train.stages import get_stage
    from andesvl_jax.train.trainer import batch_shardings, jit_train_step, make_train_step

    # two processes = two slices: the data axis crosses them, fsdp x tensor stays inside each
    slices = [f"--config.mesh.dcn_data={num_processes}"]
    config = load_config("experiments/tiny.py:stage=sft", MESH + SFT + slices)
    mesh = make_mesh(dict(config.mesh))
    model_cfg = model_config(config)
    graphdef, state, optimizer = initial_state(
        config, model_cfg, mesh, DEFAULT_RULES, get_stage("sft"), next_token_objective()
    )
    batches = iter(
        training_data(
            config, model_cfg, "demo", config.data.batch_size, process_index=0, process_count=1
        )
    )
    rows = config.data.batch_size // num_processes
    step_fn, losses = None, []
    for _ in range(config.steps):
        batch = next(batches)
        if step_fn is None:
            batch_sh = batch_shardings(batch, mesh)
            step_fn = jit_train_step(
                make_train_step(graphdef, optimizer, mesh=mesh, rules=DEFAULT_RULES),
                jax.tree.map(lambda x: x.sharding, state),
                batch_sh,
            )
        local = jax.tree.map(lambda x: x[process_id * rows : (process_id + 1) * rows], batch)
        state, metrics = step_fn(state, global_batch(local, batch_sh))
        losses.append(float(metrics["loss"]))
    if process_id == 0:
        with open(out, "w") as f:
            json.dump(
                {"losses": losses, "devices": jax.device_count(), "processes": jax.process_count()},
                f,
            )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])

"""The on-device main job (`andesvl-jax demo-ondevice`, docs/ondevice.md): a trained model ->
compressed, adapted, accelerated and exported forms, each measured (pipeline.py runs the steps in
steps.py, tables.py measures, report.py writes the report)."""

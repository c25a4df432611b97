import sys

from andesvl_jax.cli import main

sys.exit(main())

from ecrin_platform.migrations import run_env
from sharing.models import metadata

run_env(metadata)

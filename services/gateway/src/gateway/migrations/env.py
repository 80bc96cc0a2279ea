from ecrin_platform.migrations import run_env
from gateway.models import metadata

run_env(metadata)

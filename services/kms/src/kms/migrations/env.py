from ecrin_platform.migrations import run_env
from kms.models import metadata

run_env(metadata)

from ecrin_platform.migrations import run_env
from records_api.models import metadata

run_env(metadata)

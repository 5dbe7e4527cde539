"""Schemathesis over the whole OpenAPI schema with a valid, all-scopes admin token: no server errors, and
every answer with a documented status matches its documented schema. Derandomized: the same cases on
every run (CI included), so a failure repeats."""

import pytest
import schemathesis
from django.contrib.auth.models import User
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from schemathesis.checks import not_a_server_error, response_schema_conformance

from releases.models import ApiToken
from tests.conftest import ALL_SCOPES, build_form, token_client

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
EXAMPLES_PER_OPERATION = 40


def test_no_input_makes_a_server_error(live_server, users, tmp_path, settings):
    settings.ARTIFACT_DIR = tmp_path
    # Something to find: a model with a version and a release, so not every call is a 404.
    token_client(users["ci"]).post("/api/v1/builds/", build_form(), format="multipart")
    admin = User.objects.create_superuser("fuzz-admin")
    headers = {"Authorization": f"Bearer {ApiToken.issue(admin, 'fuzz', ALL_SCOPES)[1]}"}
    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @examples(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live_server.url, headers=headers,
                                   checks=[not_a_server_error, response_schema_conformance])

        no_server_error()

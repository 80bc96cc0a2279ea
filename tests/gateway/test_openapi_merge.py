"""The merged OpenAPI document: every service's public routes, one tag each."""

from __future__ import annotations

from gateway.openapi import merge


def _doc(path: str, schema: str) -> dict:
    return {
        "openapi": "3.1.0", "info": {"title": "x", "version": "1"},
        "paths": {path: {"get": {"operationId": "op", "responses": {"200": {
            "description": "ok", "content": {"application/json": {"schema": {
                "$ref": f"#/components/schemas/{schema}"}}}}}}},
                  "/internal/authz": {"post": {"operationId": "authz", "responses": {}}}},
        "components": {"schemas": {schema: {"type": "object"}}},
    }


class TestMerge:
    def test_one_tag_per_service_and_internal_routes_dropped(self):
        merged = merge({"openapi": "3.1.0", "info": {"title": "Écrin", "version": "1"},
                        "paths": {}},
                       {"kms": _doc("/v1/keys/x", "Problem"),
                        "sharing": _doc("/v1/files/x", "Problem"),
                        "records-api": _doc("/v1/records/x", "Problem")})
        assert [t["name"] for t in merged["tags"]] == ["gateway", "records-api", "kms", "sharing"]
        assert set(merged["paths"]) == {"/v1/keys/x", "/v1/files/x", "/v1/records/x"}
        assert merged["paths"]["/v1/keys/x"]["get"]["tags"] == ["kms"]

    def test_component_names_do_not_collide(self):
        merged = merge({"openapi": "3.1.0", "info": {}, "paths": {}},
                       {"kms": _doc("/v1/keys/x", "Problem"),
                        "sharing": _doc("/v1/files/x", "Problem")})
        schemas = merged["components"]["schemas"]
        assert {"Kms_Problem", "Sharing_Problem"} <= set(schemas)
        ref = merged["paths"]["/v1/keys/x"]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Kms_Problem"

    def test_a_route_outside_the_service_area_is_not_published(self):
        merged = merge({"openapi": "3.1.0", "info": {}, "paths": {}},
                       {"kms": _doc("/v1/records/hijack", "P")})
        assert "/v1/records/hijack" not in merged["paths"]


class TestSecurityAndLinks:
    def _merged(self) -> dict:
        sharing = {"openapi": "3.1.0", "info": {}, "paths": {
            "/v1/grants": {"post": {"operationId": "create", "responses": {"201": {
                "description": "made"}}}},
            "/v1/grants/{grant_id}": {"get": {"operationId": "get", "responses": {}}},
            "/v1/files": {"post": {"operationId": "create_file", "responses": {}}},
            "/v1/files/service-info": {"get": {"operationId": "info", "responses": {}}}}}
        gateway = {"openapi": "3.1.0", "info": {}, "paths": {
            "/v1/auth/login": {"post": {"operationId": "login", "responses": {}}}}}
        return merge(gateway, {"sharing": sharing})

    def test_every_operation_but_the_public_ones_needs_a_bearer_token(self):
        merged = self._merged()
        assert merged["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert merged["paths"]["/v1/files"]["post"]["security"] == [{"bearer": []}]
        assert "security" not in merged["paths"]["/v1/auth/login"]["post"]
        assert "security" not in merged["paths"]["/v1/files/service-info"]["get"]

    def test_a_create_links_to_the_read_of_what_it_made(self):
        links = self._merged()["paths"]["/v1/grants"]["post"]["responses"]["201"]["links"]
        assert links["GetGrant"] == {"operationId": "Sharing_get",
                                     "parameters": {"grant_id": "$response.body#/id"}}

    def test_problems_are_declared_with_their_real_media_type(self):
        operation = self._merged()["paths"]["/v1/files"]["post"]
        for code in ("400", "401", "403", "404", "409", "413", "422", "429", "431", "503"):
            assert "application/problem+json" in operation["responses"][code]["content"], code
        login = self._merged()["paths"]["/v1/auth/login"]["post"]
        assert "401" not in login["responses"] or "application/problem+json" in \
            login["responses"]["401"]["content"]

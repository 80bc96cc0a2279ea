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

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

    def test_a_component_shared_unchanged_is_kept_once(self):
        merged = merge({"openapi": "3.1.0", "info": {}, "paths": {}},
                       {"kms": _doc("/v1/keys/x", "ServiceInfo"),
                        "sharing": _doc("/v1/files/x", "ServiceInfo")})
        schemas = merged["components"]["schemas"]
        assert "ServiceInfo" in schemas
        assert not any(name.endswith("_ServiceInfo") or name != "ServiceInfo"
                       and name.endswith("ServiceInfo") for name in schemas)

    def test_components_that_differ_get_the_service_name_and_a_title_of_their_own(self):
        kms, sharing = _doc("/v1/keys/x", "Entry"), _doc("/v1/files/x", "Entry")
        kms["components"]["schemas"]["Entry"] = {"type": "object", "title": "Entry",
                                                 "properties": {"a": {"type": "string"}}}
        sharing["components"]["schemas"]["Entry"] = {"type": "object", "title": "Entry"}
        merged = merge({"openapi": "3.1.0", "info": {}, "paths": {}},
                       {"kms": kms, "sharing": sharing})
        schemas = merged["components"]["schemas"]
        assert {"KmsEntry", "SharingEntry"} <= set(schemas)
        assert {schemas["KmsEntry"]["title"], schemas["SharingEntry"]["title"]} == {
            "KmsEntry", "SharingEntry"}
        ref = merged["paths"]["/v1/keys/x"]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/KmsEntry"

    def test_a_shared_component_pointing_at_one_that_differs_is_not_merged(self):
        kms, sharing = _doc("/v1/keys/x", "Page"), _doc("/v1/files/x", "Page")
        for doc, kind in ((kms, "string"), (sharing, "integer")):
            doc["components"]["schemas"]["Page"] = {
                "type": "object", "properties": {"item": {"$ref": "#/components/schemas/Item"}}}
            doc["components"]["schemas"]["Item"] = {"type": kind}
        schemas = merge({"openapi": "3.1.0", "info": {}, "paths": {}},
                        {"kms": kms, "sharing": sharing})["components"]["schemas"]
        assert schemas["KmsPage"]["properties"]["item"]["$ref"] == \
            "#/components/schemas/KmsItem"
        assert schemas["SharingItem"] == {"type": "integer"}

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
        assert links["GetGrant"] == {"operationId": "get",
                                     "parameters": {"grant_id": "$response.body#/id"}}

    def test_problems_are_declared_with_their_real_media_type(self):
        operation = self._merged()["paths"]["/v1/files"]["post"]
        for code, response in operation["responses"].items():
            if code[0] in "45":
                assert "application/problem+json" in response["content"], code
        login = self._merged()["paths"]["/v1/auth/login"]["post"]
        assert "application/problem+json" in login["responses"]["401"]["content"]

    def test_only_the_problems_an_operation_can_answer_are_declared(self):
        paths = self._merged()["paths"]
        # no body, no parameter, a write: no 404, 413 or 422; a bearer token: 401 and 403
        assert {c for c in paths["/v1/files"]["post"]["responses"] if c[0] in "45"} == {
            "400", "401", "403", "409", "431", "503"}
        # a path parameter: 404 and 422; a read: no 409
        assert {c for c in paths["/v1/grants/{grant_id}"]["get"]["responses"]
                if c[0] in "45"} == {"400", "401", "403", "404", "422", "431", "503"}
        # public, rate limited, checks a signature: 401 and 429, never 403
        login = {c for c in paths["/v1/auth/login"]["post"]["responses"] if c[0] in "45"}
        assert {"401", "429"} <= login and "403" not in login
        assert paths["/v1/auth/login"]["post"]["responses"]["429"]["headers"][
            "Retry-After"] == {"$ref": "#/components/headers/Retry-After"}

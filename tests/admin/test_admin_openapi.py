"""The admin API's operations are described for the page built on them: each has a summary, a
description, the admin tag and the bearer token, and documents its errors in the one shape."""

from __future__ import annotations

from notiflow.main.app import create_app
from tests.conftest import make_settings


def test_every_admin_operation_is_described() -> None:
    schema = create_app(make_settings()).openapi()
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/v1/admin/")
        for method, operation in methods.items()
    ]
    assert len(operations) >= 14
    for name, operation in operations:
        assert operation.get("summary"), name
        assert len(operation.get("description", "")) > 80, name
        assert operation["tags"] == ["admin"], name
        assert operation["security"] == [{"bearerAuth": []}], name
        for status in ("401", "403", "404", "422"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (name, status)

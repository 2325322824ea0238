"""/admin without a browser: served like every page (headers, language), carrying no data, out
of the API's OpenAPI document."""

from __future__ import annotations

import httpx


async def test_admin_is_served_in_the_asked_language_with_the_page_headers(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/admin", headers={"Accept-Language": "az-AZ,az;q=0.9"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<html lang="az"' in page.text
    assert "Uğursuz tapşırıqlar" in page.text
    assert "/static/js/admin.js" in page.text

    english = await client.get("/admin")
    assert "Failed jobs" in english.text
    # The shell is the same for everyone: no token, no data (the scripts fetch it).
    assert "Authorization" not in english.text
    schema = (await client.get("/openapi.json")).json()
    assert "/admin" not in schema["paths"]


async def test_admin_scripts_and_styles_are_served(client: httpx.AsyncClient) -> None:
    for path, kind in [
        ("/static/js/admin.js", "javascript"),
        ("/static/js/admin-charts.js", "javascript"),
        ("/static/css/admin.css", "text/css"),
    ]:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path

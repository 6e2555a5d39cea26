"""The produce deployment registers on a Prefect server with a described parameter form."""

from __future__ import annotations

from deployments.serve import produce_deployment


def test_produce_deployment_registers_with_a_described_form(prefect_server):
    from prefect import get_client

    deployment_id = produce_deployment().apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["storyboard"]
    storyboard = schema["definitions"]["Storyboard"]["properties"]
    assert {"title", "defaults", "shots"} <= set(storyboard)
    shot = schema["definitions"]["Shot"]["properties"]
    assert all(field.get("description") for field in shot.values())

"""Tools for agents: the app served as an MCP server (`python app.py --mcp`), reached as an agent reaches it, with the
`mcp` client package over streamable HTTP: the tools listed with what they return, predict and slices called, their
answers the same as the bundle's own."""

from __future__ import annotations

import ast
import asyncio
import base64

import pytest
from helpers import DEMO_BUNDLE, local_client

from food101_core.bundle import load_bundle

TOOLS = {"predict", "explain", "metrics", "per_class", "confusion", "confusion_pair", "mistakes", "slices", "suspects",
         "evaluate_set"}  # fmt: skip


async def session_calls(url: str, photo: bytes) -> dict:
    """List the tools, then call predict (the photo as a data URL, as an agent without a file host sends it),
    slices, and confusion_pair."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _), ClientSession(read, write) as s:
        await s.initialize()
        tools = {t.name: t for t in (await s.list_tools()).tools}
        data_url = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
        predict = await s.call_tool("predict", {"photo": data_url, "grad_cam": False, "stage": "stage2"})
        slices = await s.call_tool("slices", {})
        refused = await s.call_tool("metrics", {"stage": "stage9"})
        return {"tools": tools, "predict": predict, "slices": slices, "refused": refused}


def test_an_agent_lists_the_tools_and_calls_predict_and_slices(demo_app):
    pytest.importorskip("mcp", reason="the mcp client package (requirements.txt) is not installed")
    from gradio_client import handle_file

    b = load_bundle(DEMO_BUNDLE)
    photo = b.thumb(next(i for i in range(len(b.test_ids)) if b.has_thumb(i)))
    got = asyncio.run(session_calls(demo_app, photo.read_bytes()))
    tools = got["tools"]
    assert set(tools) >= TOOLS, f"missing tools: {TOOLS - set(tools)}"
    for name in TOOLS:  # each says what it returns, and what each of its arguments means
        assert len(tools[name].description) > 60, name
        for arg, schema in tools[name].inputSchema.get("properties", {}).items():
            assert schema.get("description"), f"{name}({arg}) is undocumented"
    assert tools["predict"].inputSchema["properties"]["stage"]["enum"] == list(reversed(b.stages))
    assert not got["predict"].isError, got["predict"].content
    label, verdict, _ = ast.literal_eval(got["predict"].content[0].text)  # /predict's outputs, as Python's repr
    page = local_client(demo_app).predict(handle_file(str(photo)), False, "stage2", api_name="/predict")[0]
    assert label["label"] == page["label"] in b.class_names  # the same answer as /predict's
    assert [c["label"] for c in label["confidences"]] == [c["label"] for c in page["confidences"]]
    assert f"**{label['label']}**" in verdict
    assert not got["slices"].isError
    slices = got["slices"].content[0].text
    for s in b.slices(b.final_stage)["slices"]:
        assert s["name"] in slices
    assert got["refused"].isError  # an unknown model is an error the agent reads, not a crash

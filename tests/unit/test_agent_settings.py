"""The settings of the MCP side: the inline bound, and `monidctl mcp`'s server and key."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_agent_client_settings, load_settings

BASE = {"DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r"}


def test_the_mcp_inline_bound_is_20_kib_unless_set() -> None:
    assert load_settings(BASE).mcp_inline_output_bytes == 20 * 1024
    assert load_settings({**BASE, "MCP_INLINE_OUTPUT_BYTES": "4096"}).mcp_inline_output_bytes \
        == 4096
    with pytest.raises(SettingsError, match="MCP_INLINE_OUTPUT_BYTES"):
        load_settings({**BASE, "MCP_INLINE_OUTPUT_BYTES": "10"})


def test_monidctl_mcp_reads_monids_own_names() -> None:
    found = load_agent_client_settings({"MONID_API_KEY": " monid_live_k ",
                                        "MONID_API_BASE_URL": "https://runs.example.com/"})
    assert found.base_url == "https://runs.example.com" and found.api_key == "monid_live_k"
    assert "monid_live_k" not in repr(found)
    assert load_agent_client_settings({"MONID_API_KEY": "k"}).base_url == "http://localhost:8000"
    with pytest.raises(SettingsError, match="MONID_API_KEY"):
        load_agent_client_settings({})
    with pytest.raises(SettingsError, match="MONID_API_BASE_URL"):
        load_agent_client_settings({"MONID_API_KEY": "k", "MONID_API_BASE_URL": "ftp://x"})

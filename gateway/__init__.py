"""The WebSocket runtime of a gateway replica: handshake, pumps, fan-out, host calls."""

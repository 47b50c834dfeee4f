#!/bin/sh
# client_nng.sh - librzkv's unit tests again with RZKV_TRANSPORT=nng: every
# address through nng's REQ sockets, the path tls+tcp:// addresses take.
RZKV_TRANSPORT=nng exec "${RZKV_BUILDDIR:-.}/t/unit/test_client" "$@"

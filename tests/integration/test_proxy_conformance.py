"""test_proxy_conformance.py - the core's RFC 6455 conformance cases re-run through a proxy
route: the module's gateway serves /echo and /chat as proxy routes to the Node "ws" echo
backend, so every imported case (written against the echo route) now crosses two hops.
Fragmentation, ping/pong, close codes, UTF-8 (1007), RSV and reserved opcodes (1002), frame
lengths: the client hop must behave exactly as on a local route.

Left out, because a relay differs there by design, not by defect: cases that expect the echo
of a message sent in the same packet as a frame that fails the connection (a failed
connection sends nothing more, and the echo is still on its way back from the backend:
test_message_before_bad_frame_still_echoed, test_text_echoed_before_invalid_one,
test_continuation_after_complete_message_fails_1002, test_reserved_opcode_after_message),
and test_ping_then_message_order_kept (pings are answered by each hop at once, so a pong may
overtake the echo of a message sent before the ping)."""

import pytest

from wsharness import NodeWsBackend, proxy_route, start_gateway

# The cases, imported under their module's name where two modules share a test name.
from test_close import (test_close_code_echoed, test_close_in_one_byte_chunks,  # noqa: F401
                        test_close_payload_126_bytes_fails_1002,
                        test_close_payload_one_byte_fails_1002,
                        test_close_reason_not_utf8_fails_1007, test_close_with_max_reason,
                        test_data_after_close_ignored, test_empty_close_answered_empty_or_1000,
                        test_invalid_close_code_fails_1002, test_message_before_close_echoed)
from test_fragmentation import (test_close_between_fragments,  # noqa: F401
                                test_continuation_without_start_fails_1002,
                                test_fragmented_message_echoed_as_one,
                                test_fragments_in_one_byte_chunks,
                                test_fragments_sent_in_separate_packets,
                                test_new_data_frame_inside_fragmented_message_fails_1002,
                                test_ping_between_fragments_answered_first,
                                test_ping_between_fragments_separate_packets,
                                test_pong_between_fragments_ignored)
from test_fragmentation import \
    test_fragmented_control_fails_1002 as test_frag_fragmented_control_fails_1002  # noqa: F401
from test_framing import (test_client_length_encodings, test_echo_lengths,  # noqa: F401
                          test_frames_split_across_packets, test_many_messages_in_one_packet,
                          test_text_and_binary_alternate_on_one_connection)
from test_opcodes import test_reserved_opcode_fails_1002  # noqa: F401
from test_pingpong import (test_ping_126_bytes_fails_1002,  # noqa: F401
                           test_ping_answered_with_same_payload, test_ten_pings_answered_in_order,
                           test_unsolicited_pong_ignored)
from test_pingpong import \
    test_fragmented_control_fails_1002 as test_ping_fragmented_control_fails_1002  # noqa: F401
from test_reserved import (test_rsv_on_other_opcodes_fails_1002,  # noqa: F401
                           test_rsv_on_text_fails_1002)
from test_utf8 import (test_fail_fast_after_valid_prefix,  # noqa: F401
                       test_fail_fast_bad_first_chunk_rest_never_sent,
                       test_fail_fast_in_second_fragment, test_invalid_across_fragments_fails_1007,
                       test_invalid_inside_valid_text_fails_1007, test_invalid_text_fails_1007,
                       test_valid_text_echoed,
                       test_valid_text_in_one_byte_chunks, test_valid_text_one_byte_per_fragment)


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory):
    """Overrides conftest's: the same names the imported cases use, served by a backend."""
    backend = NodeWsBackend(quiet=True).start()
    g = start_gateway(tmp_path_factory, name="proxy-conformance",
                      gateway={"close_timeout": "1s"},
                      routes={"/echo": proxy_route(backend.url("/echo")),
                              "/chat": proxy_route(backend.url("/chat"))})
    yield g
    g.stop()
    backend.stop()

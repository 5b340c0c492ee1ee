// Prints the C layout of the channel protocol as JSON, so the test harness can check that its
// ctypes mirror (tests/channel.py) agrees with the header byte for byte.
#include <stddef.h>
#include <stdio.h>

#include "scalene_agent_protocol.h"

#define F(type, field) printf("%s\"%s.%s\": [%zu, %zu]", first ? "" : ", ", #type, #field, \
    offsetof(struct type, field), sizeof(((struct type *)0)->field)), first = 0

int main(void) {
    int first = 1;
    printf("{");
    printf("\"sizeof.scalene_frame_layout\": [0, %zu], ", sizeof(struct scalene_frame_layout));
    printf("\"sizeof.scalene_agent_config\": [0, %zu], ", sizeof(struct scalene_agent_config));
    printf("\"sizeof.scalene_raw_frame\": [0, %zu], ", sizeof(struct scalene_raw_frame));
    printf("\"sizeof.scalene_sample\": [0, %zu], ", sizeof(struct scalene_sample));
    printf("\"sizeof.scalene_channel\": [0, %zu], ", sizeof(struct scalene_channel));
    F(scalene_frame_layout, tstate_frame); F(scalene_frame_layout, cframe_current_frame);
    F(scalene_frame_layout, frame_previous); F(scalene_frame_layout, frame_code);
    F(scalene_frame_layout, frame_instr); F(scalene_frame_layout, frame_instr_size);
    F(scalene_frame_layout, frame_owner); F(scalene_frame_layout, owner_cstack);
    F(scalene_frame_layout, owner_interpreter); F(scalene_frame_layout, code_tag_bits);
    F(scalene_frame_layout, tstate_thread_id);
    F(scalene_agent_config, runtime_address); F(scalene_agent_config, memory_window);
    F(scalene_agent_config, copy_window); F(scalene_agent_config, python_hex_version);
    F(scalene_agent_config, pymalloc_pool_size); F(scalene_agent_config, pymalloc_max_small);
    F(scalene_agent_config, pymalloc_alignment); F(scalene_agent_config, heartbeat_timeout_ms);
    F(scalene_agent_config, runtime_finalizing); F(scalene_agent_config, frames);
    F(scalene_raw_frame, code); F(scalene_raw_frame, instr);
    F(scalene_sample, sequence); F(scalene_sample, kind); F(scalene_sample, tid);
    F(scalene_sample, timestamp_ns); F(scalene_sample, bytes); F(scalene_sample, weight);
    F(scalene_sample, pointer); F(scalene_sample, moved_to); F(scalene_sample, origin);
    F(scalene_sample, flags); F(scalene_sample, frame_count); F(scalene_sample, reserved);
    F(scalene_sample, frames);
    F(scalene_channel, magic); F(scalene_channel, protocol_version); F(scalene_channel, header_size);
    F(scalene_channel, record_size); F(scalene_channel, capacity); F(scalene_channel, config);
    F(scalene_channel, heartbeat_ns); F(scalene_channel, command); F(scalene_channel, reserved1);
    F(scalene_channel, state); F(scalene_channel, error_code); F(scalene_channel, agent_tid);
    F(scalene_channel, write_index); F(scalene_channel, read_index); F(scalene_channel, dropped);
    F(scalene_channel, hooked_slots); F(scalene_channel, hooked_objects);
    F(scalene_channel, python_hooks); F(scalene_channel, unsized_reallocs);
    F(scalene_channel, pool_table_full); F(scalene_channel, leak_table_full);
    F(scalene_channel, footprint_sequence); F(scalene_channel, footprint_bytes);
    F(scalene_channel, footprint_peak_bytes); F(scalene_channel, footprint_ns);
    F(scalene_channel, footprint_readings); F(scalene_channel, python_arena_bytes);
    F(scalene_channel, finalizing_ns);
    F(scalene_channel, message); F(scalene_channel, reserved2);
    printf(", \"constants\": {\"magic\": %llu, \"version\": %u, \"max_frames\": %d, \"message_size\": %d}}\n",
           (unsigned long long)SCALENE_CHANNEL_MAGIC, SCALENE_PROTOCOL_VERSION, SCALENE_MAX_FRAMES,
           SCALENE_MESSAGE_SIZE);
    return 0;
}

/* The program fan-out (srtp_fanout.c): SrtpFanOut and FANOUT_STATE_STRIDE on the addon's exports. */
#ifndef MCU_SRTP_FANOUT_H
#define MCU_SRTP_FANOUT_H
#include <node_api.h>
void mcu_srtp_fanout_init(napi_env env, napi_value exports);
#endif

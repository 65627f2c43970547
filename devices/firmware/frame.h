/*
 * bridge-edge serial frame (DESIGN.md §6), plain C99: compiles for AVR/ESP32 and on the host.
 *
 *   0xA5 0x5A | version u8 = 1 | seq u16 LE | t_device_us u32 LE | n u8 | channels u8 |
 *   fmt u8 (1 = int16, 2 = int24, 3 = float32) | payload n x channels samples LE |
 *   CRC-16/CCITT-FALSE u16 LE over version..payload
 *
 * seq counts frames (mod 2^16); t_device_us is the time of the frame's first sample.
 * The Python decoder is bridge_edge/devices/frame.py; both are tested with the same bytes.
 */
#ifndef BRIDGE_EDGE_FRAME_H
#define BRIDGE_EDGE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BE_FRAME_VERSION 1
#define BE_FMT_INT16 1
#define BE_FMT_INT24 2
#define BE_FMT_FLOAT32 3
#define BE_FRAME_OVERHEAD 14 /* magic 2 + header 10 + crc 2 */

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection; crc("123456789") = 0x29B1. */
uint16_t be_crc16_ccitt_false(const uint8_t *data, size_t len);

/* Bytes a frame of n samples x channels in fmt occupies; 0 for an unknown fmt. */
size_t be_frame_size(uint8_t n, uint8_t channels, uint8_t fmt);

/* Encode integer samples (row-major n x channels) as int16 or int24. Values are truncated
 * to the format's width. Returns the frame length, or 0 if out is too small or fmt is wrong. */
size_t be_frame_encode_int(uint8_t *out, size_t capacity, uint16_t seq, uint32_t t_device_us,
                           uint8_t n, uint8_t channels, uint8_t fmt, const int32_t *samples);

/* Encode float32 samples (row-major n x channels). Returns the frame length or 0. */
size_t be_frame_encode_float(uint8_t *out, size_t capacity, uint16_t seq, uint32_t t_device_us,
                             uint8_t n, uint8_t channels, const float *samples);

#ifdef __cplusplus
}
#endif

#endif /* BRIDGE_EDGE_FRAME_H */

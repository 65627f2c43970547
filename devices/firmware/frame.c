/* bridge-edge serial frame encoder; see frame.h for the layout. */
#include "frame.h"

#include <string.h>

uint16_t be_crc16_ccitt_false(const uint8_t *data, size_t len) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)data[i] << 8;
    for (int bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

static size_t sample_bytes(uint8_t fmt) {
  switch (fmt) {
    case BE_FMT_INT16: return 2;
    case BE_FMT_INT24: return 3;
    case BE_FMT_FLOAT32: return 4;
    default: return 0;
  }
}

size_t be_frame_size(uint8_t n, uint8_t channels, uint8_t fmt) {
  size_t width = sample_bytes(fmt);
  return width ? BE_FRAME_OVERHEAD + (size_t)n * channels * width : 0;
}

static void put_le(uint8_t *out, uint32_t value, size_t width) {
  for (size_t i = 0; i < width; i++) out[i] = (uint8_t)(value >> (8 * i));
}

/* Writes magic + header; returns a pointer to the payload, or NULL if it will not fit. */
static uint8_t *begin(uint8_t *out, size_t capacity, uint16_t seq, uint32_t t_device_us, uint8_t n,
                      uint8_t channels, uint8_t fmt) {
  size_t size = be_frame_size(n, channels, fmt);
  if (size == 0 || size > capacity || n == 0 || channels == 0) return NULL;
  out[0] = 0xA5;
  out[1] = 0x5A;
  out[2] = BE_FRAME_VERSION;
  put_le(out + 3, seq, 2);
  put_le(out + 5, t_device_us, 4);
  out[9] = n;
  out[10] = channels;
  out[11] = fmt;
  return out + 12;
}

static size_t finish(uint8_t *out, size_t payload_len) {
  size_t body_len = 10 + payload_len; /* version..payload */
  put_le(out + 2 + body_len, be_crc16_ccitt_false(out + 2, body_len), 2);
  return 2 + body_len + 2;
}

size_t be_frame_encode_int(uint8_t *out, size_t capacity, uint16_t seq, uint32_t t_device_us,
                           uint8_t n, uint8_t channels, uint8_t fmt, const int32_t *samples) {
  if (fmt != BE_FMT_INT16 && fmt != BE_FMT_INT24) return 0;
  uint8_t *payload = begin(out, capacity, seq, t_device_us, n, channels, fmt);
  if (!payload) return 0;
  size_t width = sample_bytes(fmt), count = (size_t)n * channels;
  for (size_t i = 0; i < count; i++) put_le(payload + i * width, (uint32_t)samples[i], width);
  return finish(out, count * width);
}

size_t be_frame_encode_float(uint8_t *out, size_t capacity, uint16_t seq, uint32_t t_device_us,
                             uint8_t n, uint8_t channels, const float *samples) {
  uint8_t *payload = begin(out, capacity, seq, t_device_us, n, channels, BE_FMT_FLOAT32);
  if (!payload) return 0;
  size_t count = (size_t)n * channels;
  for (size_t i = 0; i < count; i++) {
    uint32_t bits;
    memcpy(&bits, &samples[i], sizeof bits); /* IEEE-754 on every target we support */
    put_le(payload + 4 * i, bits, 4);
  }
  return finish(out, count * 4);
}

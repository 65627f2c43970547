/*
 * Host-side driver for tests: reads frame specs from stdin, prints each encoded frame as hex.
 *
 *   one spec per line:  seq t_device_us n channels fmt v0 v1 ... v(n*channels-1)
 *   build:              cc -std=c99 -Wall -Werror -I.. ../frame.c frame_cli.c -o frame_cli
 *   special line:       crc <ascii>   prints the CRC of <ascii> as 4 hex digits
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int main(void) {
  char line[65536];
  static uint8_t frame[BE_FRAME_OVERHEAD + 255 * 255 * 4];
  static int32_t ints[255 * 255];
  static float floats[255 * 255];
  while (fgets(line, sizeof line, stdin)) {
    if (strncmp(line, "crc ", 4) == 0) {
      size_t len = strcspn(line + 4, "\r\n");
      printf("%04x\n", be_crc16_ccitt_false((const uint8_t *)line + 4, len));
      continue;
    }
    char *cursor = line;
    unsigned long seq = strtoul(cursor, &cursor, 10), t_us = strtoul(cursor, &cursor, 10);
    long n = strtol(cursor, &cursor, 10), channels = strtol(cursor, &cursor, 10);
    long fmt = strtol(cursor, &cursor, 10);
    if (n <= 0 || channels <= 0) continue;
    for (long i = 0; i < n * channels; i++) {
      if (fmt == BE_FMT_FLOAT32) floats[i] = strtof(cursor, &cursor);
      else ints[i] = (int32_t)strtol(cursor, &cursor, 10);
    }
    size_t len = fmt == BE_FMT_FLOAT32
        ? be_frame_encode_float(frame, sizeof frame, (uint16_t)seq, (uint32_t)t_us, (uint8_t)n, (uint8_t)channels, floats)
        : be_frame_encode_int(frame, sizeof frame, (uint16_t)seq, (uint32_t)t_us, (uint8_t)n, (uint8_t)channels, (uint8_t)fmt, ints);
    if (len == 0) {
      printf("error\n");
      continue;
    }
    for (size_t i = 0; i < len; i++) printf("%02x", frame[i]);
    printf("\n");
  }
  return 0;
}

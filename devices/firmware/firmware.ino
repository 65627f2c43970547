/*
 * bridge-edge sensor firmware: MAX30102 PPG (I2C) + AD8232 ECG (analog) -> framed serial stream.
 *
 * Board: Arduino Uno/Nano (AVR) or any ESP32 dev board. Libraries: "SparkFun MAX3010x Pulse and
 * Proximity Sensor Library" (1.1.2). Wiring: MAX30102 on SDA/SCL (3.3 V); AD8232 OUTPUT -> A0,
 * LO+ -> 10, LO- -> 11 (ESP32: pick ADC1 pins, e.g. 34, and any GPIOs for LO+/LO-).
 *
 * Every FRAME_SAMPLES samples at SAMPLE_HZ it sends one DESIGN.md §6 frame (frame.c) with three
 * int24 channels: [ir, ecg, lead_off]: IR counts, the ECG ADC count and 1 while the AD8232
 * reports a lead off (its LO+/LO- pins), else 0. seq counts frames; t_device_us is micros() of
 * the frame's first sample, so the host measures the true rate and every lost frame.
 *
 * Host side:  bridge-edge record --source 'serial:///dev/ttyACM0?format=frame&fs=100&channels=ppg,ecg,lead_off' --out rec
 *
 * Build:      arduino-cli compile --fqbn arduino:avr:uno devices/firmware
 *             arduino-cli upload  --fqbn arduino:avr:uno -p /dev/ttyACM0 devices/firmware
 * (frame.c and frame.h sit next to this sketch, so the IDE compiles them with it.)
 */
#include <Wire.h>

#include "MAX30105.h"
#include "frame.h"

static const uint32_t BAUD = 115200;      // 10 frames/s x 104 bytes: under 10 % of the link
static const uint16_t SAMPLE_HZ = 100;    // MAX30102: sampleRate 400 / sampleAverage 4
static const uint8_t FRAME_SAMPLES = 10;  // 10 frames/s; latency 0.1 s
static const uint8_t CHANNELS = 3;        // ir, ecg, lead_off
static const uint8_t PIN_ECG = A0, PIN_LO_PLUS = 10, PIN_LO_MINUS = 11;

MAX30105 ppg;
static int32_t samples[FRAME_SAMPLES * CHANNELS];
static uint8_t frame[BE_FRAME_OVERHEAD + FRAME_SAMPLES * CHANNELS * 3];
static uint8_t filled = 0;
static uint16_t seq = 0;
static uint32_t frame_start_us = 0;

void setup() {
  Serial.begin(BAUD);
  pinMode(PIN_LO_PLUS, INPUT);
  pinMode(PIN_LO_MINUS, INPUT);
  if (!ppg.begin(Wire, I2C_SPEED_FAST)) {
    while (true) {
      Serial.println("MAX30102 not found; check wiring");  // text before frames is skipped and counted
      delay(1000);
    }
  }
  // powerLevel, sampleAverage, ledMode (2 = red + IR), sampleRate, pulseWidth, adcRange
  ppg.setup(0x1F, 4, 2, 400, 411, 4096);
}

void loop() {
  ppg.check();  // drains the sensor FIFO; one available() sample per 1/SAMPLE_HZ
  while (ppg.available()) {
    if (filled == 0) frame_start_us = micros();
    bool lead_off = digitalRead(PIN_LO_PLUS) == HIGH || digitalRead(PIN_LO_MINUS) == HIGH;
    samples[filled * CHANNELS + 0] = (int32_t)ppg.getFIFOIR();
    samples[filled * CHANNELS + 1] = (int32_t)analogRead(PIN_ECG);
    samples[filled * CHANNELS + 2] = lead_off ? 1 : 0;
    ppg.nextSample();
    if (++filled == FRAME_SAMPLES) {
      size_t len = be_frame_encode_int(frame, sizeof frame, seq++, frame_start_us, FRAME_SAMPLES, CHANNELS,
                                       BE_FMT_INT24, samples);
      Serial.write(frame, len);
      filled = 0;
    }
  }
}

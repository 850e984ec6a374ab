// A seeded generator of a realistic company's event stream, for demos, tests
// and benchmarks: niche teams with leads and a head, partners that bring
// leads, client leads of which about a quarter are won, post-sale care
// (delivery, delays, support, complaints, feedback, case studies), repeat
// orders and referrals, payments in two currencies, activities of every kind,
// owner changes, and about 2 % of events arriving late.
//
// The same options always give the same events. Every event is valid when
// ingested in the order produced (late events refer only to what exists).
//
// Thread-safety: a Generator is not shared between threads; separate
// generators are independent.
#ifndef RAPPORT_TESTING_GENERATOR_H_
#define RAPPORT_TESTING_GENERATOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "rapport/v1/event.pb.h"

namespace rapport::testing {

struct GeneratorOptions {
  uint64_t seed = 1;
  // Stop after this many events (0: no limit; then `end_us` must be set).
  int64_t max_events = 100000;
  // Simulation start, microseconds since the epoch (default 2025-01-01Z).
  int64_t start_us = 1735689600000000;
  // Stop at this instant (0: no limit).
  int64_t end_us = 0;
  // New client leads per day; 0 picks a rate at which `max_events` span
  // about a year.
  double leads_per_day = 0;
  // Niche teams (each with a lead and its own segment) and managers per team.
  int teams = 3;
  int managers_per_team = 4;
  // Share of events delivered after later ones.
  double late_share = 0.02;
};

class Generator {
 public:
  explicit Generator(const GeneratorOptions& options);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // The next event in arrival order; false when the stream is over.
  bool Next(v1::Event* event);

  // Events produced so far, and how many of them arrived late.
  int64_t produced() const;
  int64_t late() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The whole stream at once.
std::vector<v1::Event> GenerateStream(const GeneratorOptions& options);

}  // namespace rapport::testing

#endif  // RAPPORT_TESTING_GENERATOR_H_

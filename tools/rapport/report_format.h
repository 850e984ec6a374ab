// Turns KPI reports into tables, CSV and JSON for people and scripts.
//
// KpiValues is flattened by reflection ("lead_conversion",
// "revenue.RUB", "activities.calls_outbound", "stage_conversion.client.lead"),
// so every figure the engine reports reaches the output without a list here
// to keep in step with the schema.
#ifndef RAPPORT_TOOLS_RAPPORT_REPORT_FORMAT_H_
#define RAPPORT_TOOLS_RAPPORT_REPORT_FORMAT_H_

#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/message.h"

namespace rapport::cli {

// (name, value) pairs in schema order; a null ratio is "null".
std::vector<std::pair<std::string, std::string>> Flatten(const google::protobuf::Message& values);

// One row per bucket and group of a rapport.v1.KpiReport.
std::string ReportAsCsv(const google::protobuf::Message& report);
// A fixed-width table of the main figures.
std::string ReportAsTable(const google::protobuf::Message& report);

}  // namespace rapport::cli

#endif  // RAPPORT_TOOLS_RAPPORT_REPORT_FORMAT_H_

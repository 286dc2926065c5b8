// Reads JSON/JSONL files with errors that name the file, line and column (or the record),
// so a malformed recipe or dataset points the user at the exact spot.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace ponder {

nlohmann::json read_json_file(const std::filesystem::path& path);
nlohmann::json parse_json_text(const std::string& text, const std::string& source_name);
// Calls on_record for every non-empty line; errors carry "FILE:LINE".
void for_each_jsonl(const std::filesystem::path& path,
                    const std::function<void(const nlohmann::json&, std::size_t line)>& on_record);
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ponder

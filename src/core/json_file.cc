#include "core/json_file.h"

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace ponder {

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open file (does it exist and is it readable?)");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::json parse_json_text(const std::string& text, const std::string& source_name) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::size_t line = 1, column = 1;
    const std::size_t end = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    for (std::size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string what = e.what();
    // nlohmann prefixes "[json.exception...] parse error at line L, column C: "; we give our own.
    const auto column_mark = what.find(", column ");
    const auto detail = column_mark == std::string::npos ? column_mark : what.find(": ", column_mark);
    if (detail != std::string::npos) what = what.substr(detail + 2);
    throw Error(source_name + ":" + std::to_string(line) + ":" + std::to_string(column) +
                ": invalid JSON: " + what);
  }
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  return parse_json_text(read_text_file(path), path.string());
}

void for_each_jsonl(const std::filesystem::path& path,
                    const std::function<void(const nlohmann::json&, std::size_t)>& on_record) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open file (does it exist and is it readable?)");
  std::string text;
  for (std::size_t line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path.string() + ":" + std::to_string(line);
    nlohmann::json record = nlohmann::json::parse(text, nullptr, false);
    if (record.is_discarded()) throw Error(where + ": invalid JSON line");
    on_record(record, line);
  }
}

}  // namespace ponder

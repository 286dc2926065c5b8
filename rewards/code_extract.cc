#include "rewards/code_extract.h"

#include "sandbox/languages.h"

namespace ponder::rewards {
namespace {

struct Fence {
  char symbol = 0;
  std::size_t length = 0;
  std::string_view info;
};

// A fence line: up to three spaces, then at least three backticks or tildes.
Fence parse_fence(std::string_view line) {
  std::size_t indent = line.find_first_not_of(' ');
  if (indent == std::string_view::npos || indent > 3) return {};
  char symbol = line[indent];
  if (symbol != '`' && symbol != '~') return {};
  std::size_t end = line.find_first_not_of(symbol, indent);
  if (end == std::string_view::npos) end = line.size();
  if (end - indent < 3) return {};
  return {symbol, end - indent, line.substr(end)};
}

std::string first_word(std::string_view info) {
  std::size_t start = info.find_first_not_of(" \t\r{.");
  if (start == std::string_view::npos) return "";
  std::size_t end = info.find_first_of(" \t\r}", start);
  return std::string(info.substr(start, end == std::string_view::npos ? end : end - start));
}

bool tag_is(const std::string& tag, std::string_view language) {
  const sandbox::Language* wanted = sandbox::find_language(language);
  return wanted != nullptr && sandbox::find_language(tag) == wanted;
}

}  // namespace

std::vector<CodeBlock> fenced_blocks(std::string_view text) {
  std::vector<CodeBlock> blocks;
  Fence open;
  std::size_t body_start = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t eol = text.find('\n', pos);
    std::size_t next = eol == std::string_view::npos ? text.size() : eol + 1;
    std::string_view line = text.substr(pos, next - pos);
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    Fence fence = parse_fence(line);
    if (open.symbol == 0 && fence.symbol != 0) {
      open = fence;
      body_start = next;
      blocks.push_back({first_word(fence.info), ""});
    } else if (open.symbol != 0 && fence.symbol == open.symbol && fence.length >= open.length &&
               fence.info.find_first_not_of(" \t\r") == std::string_view::npos) {
      blocks.back().code = std::string(text.substr(body_start, pos - body_start));
      open = {};
    }
    pos = next;
  }
  if (open.symbol != 0) blocks.back().code = std::string(text.substr(body_start));
  return blocks;
}

ExtractedCode extract_code(std::string_view completion, std::string_view language) {
  std::size_t think_end = completion.rfind("</think>");
  if (think_end != std::string_view::npos) completion.remove_prefix(think_end + 8);
  std::vector<CodeBlock> blocks = fenced_blocks(completion);
  if (blocks.empty()) return {std::string(completion), "", false};
  const CodeBlock* chosen = &blocks.back();
  const CodeBlock* untagged = nullptr;
  const CodeBlock* tagged = nullptr;
  for (const CodeBlock& block : blocks) {
    if (block.tag.empty()) untagged = &block;
    if (tag_is(block.tag, language)) tagged = &block;
  }
  if (tagged) {
    chosen = tagged;
  } else if (untagged) {
    chosen = untagged;
  }
  return {chosen->code, chosen->tag, true};
}

}  // namespace ponder::rewards

// Finds the program in a model completion: markdown fenced blocks (``` or ~~~, with an
// optional language tag), ignoring anything inside a <think> section.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ponder::rewards {

struct CodeBlock {
  std::string tag;  // first word of the fence's info string, may be empty
  std::string code;
};

// Every fenced block in order; an unterminated last fence runs to the end of the text.
std::vector<CodeBlock> fenced_blocks(std::string_view text);

struct ExtractedCode {
  std::string code;
  std::string tag;
  bool fenced = false;  // false: no fence at all, the whole answer is the code
};

// The last block tagged with `language` (or an alias, per sandbox/languages.h), else the last
// untagged block, else the last block; with no fence at all, the whole text. Only the text
// after the last "</think>" is considered when there is one.
ExtractedCode extract_code(std::string_view completion, std::string_view language);

}  // namespace ponder::rewards

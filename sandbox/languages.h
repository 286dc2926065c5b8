// The languages a sandbox can run: how a source file is named, compiled (inside the sandbox
// too) and started. Adding a language is one entry in the table in languages.cc.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ponder::sandbox {

struct Language {
  std::string name;
  std::vector<std::string> aliases;       // also accepted as names and as markdown fence tags
  std::string source_file;                // written to /work
  std::vector<std::string> compile_argv;  // empty for interpreted languages
  std::string binary;                     // what compile_argv produces in /work
  std::vector<std::string> run_argv;      // argv[0] absolute inside the sandbox
};

const std::vector<Language>& languages();
// Matches names and aliases case-insensitively; nullptr when unknown.
const Language* find_language(std::string_view name);
// Like find_language but throws ponder::Error listing the known names.
const Language& language(std::string_view name);

}  // namespace ponder::sandbox

#include "sandbox/languages.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace ponder::sandbox {

const std::vector<Language>& languages() {
  static const std::vector<Language> table = {
      {.name = "python",
       .aliases = {"python3", "py"},
       .source_file = "main.py",
       .run_argv = {"/usr/bin/python3", "-E", "-s", "-B", "main.py"}},
      {.name = "cpp",
       .aliases = {"c++", "cxx", "cc"},
       .source_file = "main.cc",
       .compile_argv = {"/usr/bin/g++", "-std=c++17", "-O2", "-pipe", "-o", "main", "main.cc"},
       .binary = "main",
       .run_argv = {"/work/main"}},
      {.name = "c",
       .source_file = "main.c",
       .compile_argv = {"/usr/bin/gcc", "-std=c11", "-O2", "-pipe", "-o", "main", "main.c", "-lm"},
       .binary = "main",
       .run_argv = {"/work/main"}},
  };
  return table;
}

namespace {

bool same_name(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

}  // namespace

const Language* find_language(std::string_view name) {
  for (const Language& lang : languages()) {
    if (same_name(lang.name, name)) return &lang;
    for (const std::string& alias : lang.aliases) {
      if (same_name(alias, name)) return &lang;
    }
  }
  return nullptr;
}

const Language& language(std::string_view name) {
  if (const Language* found = find_language(name)) return *found;
  std::string known;
  for (const Language& lang : languages()) known += (known.empty() ? "" : ", ") + lang.name;
  throw Error("sandbox: unknown language '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace ponder::sandbox

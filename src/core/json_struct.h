// Typed structs <-> JSON with strict checking: unknown keys fail with the JSON path and the
// closest valid key, wrong types name the path and what was expected. Used by recipes.
//
// A struct opts in with a member template listing its fields once, with help text:
//   template <class V> void fields(V& v) { v("lr", lr, "peak learning rate"); }
// Defaults are the member initialisers, so they live next to the declaration.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace ponder::json_struct {

using nlohmann::json;

// Levenshtein-closest candidate, or "" when nothing is reasonably close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
std::string type_name(const json& j);
std::string join_path(const std::string& path, const std::string& key);

template <class T>
void read(const json& j, T& out, const std::string& path);
template <class T>
json write(const T& value);

namespace detail {

struct NameCollector {
  std::vector<std::string> names;
  template <class M>
  void operator()(const char* name, M&, const char*) {
    names.emplace_back(name);
  }
};

struct Reader {
  const json& object;
  const std::string& path;
  template <class M>
  void operator()(const char* name, M& member, const char*) {
    auto it = object.find(name);
    if (it != object.end()) read(*it, member, join_path(path, name));
  }
};

struct Writer {
  json& object;
  template <class M>
  void operator()(const char* name, const M& member, const char*) {
    object[name] = write(member);
  }
};

[[noreturn]] void type_error(const std::string& path, const char* expected, const json& j);

}  // namespace detail

template <class T>
void read(const json& j, T& out, const std::string& path) {
  using detail::type_error;
  if constexpr (std::is_same_v<T, bool>) {
    if (!j.is_boolean()) type_error(path, "true or false", j);
    out = j.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!j.is_number_integer()) type_error(path, "an integer", j);
    out = j.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!j.is_number()) type_error(path, "a number", j);
    out = j.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!j.is_string()) type_error(path, "a string", j);
    out = j.get<std::string>();
  } else if constexpr (std::is_same_v<T, json>) {
    out = j;
  } else if constexpr (requires {
                         typename T::value_type;
                         out.push_back(typename T::value_type{});
                       }) {
    if (!j.is_array()) type_error(path, "an array", j);
    out.clear();
    for (std::size_t i = 0; i < j.size(); ++i) {
      typename T::value_type item{};
      read(j[i], item, path + "[" + std::to_string(i) + "]");
      out.push_back(std::move(item));
    }
  } else if constexpr (requires {
                         typename T::value_type;
                         out.has_value();
                       }) {
    if (j.is_null()) {
      out.reset();
    } else {
      typename T::value_type item{};
      read(j, item, path);
      out = std::move(item);
    }
  } else {
    if (!j.is_object()) type_error(path, "an object", j);
    detail::NameCollector collector;
    out.fields(collector);
    for (const auto& [key, value] : j.items()) {
      if (std::find(collector.names.begin(), collector.names.end(), key) != collector.names.end())
        continue;
      std::string message = join_path(path, key) + ": unknown key";
      const std::string suggestion = closest_match(key, collector.names);
      if (!suggestion.empty()) message += "; did you mean '" + suggestion + "'?";
      throw Error(message);
    }
    detail::Reader reader{j, path};
    out.fields(reader);
  }
}

template <class T>
json write(const T& value) {
  if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string> ||
                std::is_same_v<T, json>) {
    return json(value);
  } else if constexpr (requires { value.has_value(); }) {
    return value ? write(*value) : json(nullptr);
  } else if constexpr (requires { value.begin(); }) {
    json array = json::array();
    for (const auto& item : value) array.push_back(write(item));
    return array;
  } else {
    json object = json::object();
    detail::Writer writer{object};
    const_cast<T&>(value).fields(writer);
    return object;
  }
}

// Applies `a.b.c=value` to a JSON document; value is parsed as JSON when it is valid JSON,
// otherwise taken as a string (so `--set model.path=/x` needs no quotes).
void apply_override(json& document, const std::string& assignment);

}  // namespace ponder::json_struct

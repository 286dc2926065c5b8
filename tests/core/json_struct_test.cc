#include "core/json_struct.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/json_file.h"

namespace ponder {
namespace {

struct Inner {
  double lr = 1e-3;
  std::int64_t warmup = 10;
  template <class V>
  void fields(V& v) {
    v("lr", lr, "learning rate");
    v("warmup", warmup, "warmup steps");
  }
};

struct Outer {
  std::string name = "run";
  bool verbose = false;
  std::vector<std::string> tags;
  std::optional<double> limit;
  Inner optim;
  template <class V>
  void fields(V& v) {
    v("name", name, "run name");
    v("verbose", verbose, "log more");
    v("tags", tags, "labels");
    v("limit", limit, "optional cap");
    v("optim", optim, "optimizer");
  }
};

std::string error_of(const nlohmann::json& j) {
  Outer out;
  try {
    json_struct::read(j, out, "");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonStruct, ReadsValuesAndKeepsDefaults) {
  Outer out;
  json_struct::read(nlohmann::json::parse(R"({"name":"x","optim":{"lr":0.5},"tags":["a","b"]})"),
                    out, "");
  EXPECT_EQ(out.name, "x");
  EXPECT_DOUBLE_EQ(out.optim.lr, 0.5);
  EXPECT_EQ(out.optim.warmup, 10);
  EXPECT_EQ(out.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(out.limit.has_value());
}

TEST(JsonStruct, UnknownKeyNamesPathAndClosestKey) {
  EXPECT_EQ(error_of(nlohmann::json::parse(R"({"optim":{"lrr":1}})")),
            "optim.lrr: unknown key; did you mean 'lr'?");
  EXPECT_EQ(error_of(nlohmann::json::parse(R"({"zzzzzzzz":1})")), "zzzzzzzz: unknown key");
}

TEST(JsonStruct, WrongTypeNamesPathAndExpectation) {
  EXPECT_EQ(error_of(nlohmann::json::parse(R"({"optim":{"warmup":"ten"}})")),
            "optim.warmup: expected an integer, got string \"ten\"");
  EXPECT_EQ(error_of(nlohmann::json::parse(R"({"verbose":1})")),
            "verbose: expected true or false, got integer 1");
  EXPECT_EQ(error_of(nlohmann::json::parse(R"({"tags":["a",2]})")),
            "tags[1]: expected a string, got integer 2");
  EXPECT_EQ(error_of(nlohmann::json::parse(R"([1])")),
            "(top level): expected an object, got array");
}

TEST(JsonStruct, RoundTripsThroughWrite) {
  Outer out;
  out.limit = 3.0;
  const auto j = json_struct::write(out);
  EXPECT_EQ(j["optim"]["warmup"], 10);
  EXPECT_EQ(j["limit"], 3.0);
  Outer back;
  json_struct::read(j, back, "");
  EXPECT_EQ(json_struct::write(back), j);
}

TEST(JsonStruct, OverridesParseJsonOrFallBackToString) {
  nlohmann::json doc = {{"optim", {{"lr", 1}}}};
  json_struct::apply_override(doc, "optim.lr=0.25");
  json_struct::apply_override(doc, "name=/tmp/x");
  json_struct::apply_override(doc, "tags=[\"q\"]");
  EXPECT_EQ(doc["optim"]["lr"], 0.25);
  EXPECT_EQ(doc["name"], "/tmp/x");
  EXPECT_EQ(doc["tags"][0], "q");
  EXPECT_THROW(json_struct::apply_override(doc, "novalue"), Error);
  EXPECT_THROW(json_struct::apply_override(doc, "a..b=1"), Error);
}

TEST(JsonFile, InvalidJsonReportsLineAndColumn) {
  const auto path = std::filesystem::temp_directory_path() / "ponder_bad.json";
  std::ofstream(path) << "{\n  \"a\": 1,\n  \"b\": ,\n}\n";
  try {
    read_json_file(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ":3:8: invalid JSON"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

TEST(JsonFile, MissingFileIsAClearError) {
  try {
    read_json_file("/nonexistent/recipe.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "/nonexistent/recipe.json: cannot open file (does it exist and is it readable?)");
  }
}

}  // namespace
}  // namespace ponder

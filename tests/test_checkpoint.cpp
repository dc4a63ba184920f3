// Safetensors, model and checkpoint files, and atomic writing: round trips are exact,
// every kind of corrupt or hostile file is an InputError (never a crash), and a failed
// write leaves the previous file as it was.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <fstream>
#include <functional>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "host/io/atomic_file.hpp"
#include "host/io/checkpoint.hpp"
#include "eqpm/error.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

// 8-byte little-endian length, header, data: a file built by hand.
std::string raw_file(const std::string& header, const std::string& data = "",
                     std::uint64_t length = std::numeric_limits<std::uint64_t>::max()) {
  if (length == std::numeric_limits<std::uint64_t>::max()) length = header.size();
  std::string out;
  for (int i = 0; i < 8; ++i) out += char((length >> (8 * i)) & 0xFF);
  return out + header + data;
}

std::string decode_error(const std::string& bytes) {
  try {
    decode_safetensors(bytes, "bad.safetensors");
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "bad.safetensors");
    return e.what();
  }
  return "";
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::vector<float> iota_params(long n) {
  std::vector<float> p(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) p[size_t(i)] = float(std::sin(0.37 * double(i)) * 1.5 + 1e-3 * double(i));
  return p;
}

SafetensorsFile sample_file() {
  SafetensorsFile f;
  f.metadata = {{"eqpm.version", "0.1.0"},
                {"escapes", "quote\" backslash\\ tab\t nl\n nul\x01 e\xc3\xa9 emoji\xf0\x9f\x98\x80"}};
  f.tensors.push_back({"a", "F32", {2, 3}, bytes_of(std::vector<float>{1, 2, 3, 4, 5, -0.0f})});
  f.tensors.push_back({"b", "F64", {1}, bytes_of(std::vector<double>{0.1})});
  f.tensors.push_back({"c", "I64", {0}, ""});
  f.tensors.push_back({"d", "U8", {}, std::string("\x07", 1)});
  return f;
}

// --------------------------------------------------------------------- safetensors

TEST(Safetensors, EncodeDecodeRoundTrip) {
  const SafetensorsFile f = sample_file();
  const std::string bytes = encode_safetensors(f);
  // Header padded so the data starts 8-byte aligned.
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const SafetensorsFile g = decode_safetensors(bytes, "x");
  EXPECT_EQ(g.metadata, f.metadata);
  ASSERT_EQ(g.tensors.size(), f.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    EXPECT_EQ(g.tensors[i].name, f.tensors[i].name);
    EXPECT_EQ(g.tensors[i].dtype, f.tensors[i].dtype);
    EXPECT_EQ(g.tensors[i].shape, f.tensors[i].shape);
    EXPECT_EQ(g.tensors[i].bytes, f.tensors[i].bytes);
  }
  ASSERT_NE(g.find("b"), nullptr);
  EXPECT_EQ(g.find("zz"), nullptr);
}

TEST(Safetensors, ReadsHandWrittenHeaderInAnyOrderWithEscapes) {
  // What another writer may produce: whitespace, escapes, tensors not in offset order.
  const std::string header =
      " { \"__metadata__\" : { \"k\\u00e9\\ud83d\\ude00\" : \"v\\/\\b\\f\\r\" } ,\n"
      "  \"late\": {\"shape\": [1], \"dtype\": \"I32\", \"data_offsets\": [4, 8]},\n"
      "  \"early\": {\"data_offsets\": [0, 4], \"dtype\": \"F32\", \"shape\": []} }   ";
  const SafetensorsFile f = decode_safetensors(raw_file(header, std::string(8, '\0')), "x");
  EXPECT_EQ(f.metadata.at("k\xc3\xa9\xf0\x9f\x98\x80"), "v/\b\f\r");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].name, "late");
  EXPECT_EQ(f.tensors[1].shape, std::vector<long long>{});
  EXPECT_EQ(f.tensors[1].bytes.size(), 4u);
}

TEST(Safetensors, EncodeRejectsInconsistentTensors) {
  SafetensorsFile f;
  f.tensors.push_back({"a", "F32", {3}, std::string(8, '\0')});
  EXPECT_THROW(encode_safetensors(f), Error);
  f.tensors[0] = {"a", "Q7", {1}, std::string(1, '\0')};
  EXPECT_THROW(encode_safetensors(f), Error);
  f.tensors[0] = {"a", "U8", {1}, std::string(1, '\0')};
  f.tensors.push_back(f.tensors[0]);
  EXPECT_THROW(encode_safetensors(f), Error);
  f.tensors.pop_back();
  f.metadata["bad"] = "\xff";
  EXPECT_THROW(encode_safetensors(f), Error);
}

TEST(Safetensors, EveryTruncationIsAnInputError) {
  const std::string bytes = encode_safetensors(sample_file());
  for (size_t len = 0; len < bytes.size(); ++len) {
    const std::string msg = decode_error(bytes.substr(0, len));
    EXPECT_FALSE(msg.empty()) << "accepted a file truncated to " << len << " bytes";
  }
  EXPECT_TRUE(contains(decode_error(bytes.substr(0, 5)), "shorter than the 8-byte"));
  EXPECT_TRUE(contains(decode_error(bytes.substr(0, 20)), "runs past the end"));
  EXPECT_TRUE(contains(decode_error(bytes.substr(0, bytes.size() - 1)), "truncated"));
}

struct Corrupt {
  const char* name;
  std::string bytes;
  const char* expected;  // part of the message
};

std::vector<Corrupt> corrupt_files() {
  const std::string f32x2(8, '\0');
  const auto one = [](const std::string& entry) { return "{\"t\":" + entry + "}"; };
  const std::string ok_entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::vector<Corrupt> c = {
      {"empty_file", "", "shorter than the 8-byte"},
      {"seven_bytes", std::string(7, '\0'), "shorter than the 8-byte"},
      {"header_length_2_63", raw_file("{}", "", 1ull << 63), "exceeds the limit"},
      {"header_length_all_ones", raw_file("{}", "", ~0ull - 1), "exceeds the limit"},
      {"header_length_over_limit", raw_file("{}", "", kSafetensorsMaxHeader + 1), "exceeds the limit"},
      {"header_length_past_end", raw_file("{}", "", 100), "runs past the end"},
      {"header_empty", raw_file(""), "empty"},
      {"header_blank", raw_file("        "), "empty"},
      {"header_not_json", raw_file("hello"), "header byte 0"},
      {"header_array", raw_file("[]"), "must be a JSON object"},
      {"header_string", raw_file("\"x\""), "must be a JSON object"},
      {"unterminated_object", raw_file("{\"t\":"), "unexpected end"},
      {"missing_colon", raw_file("{\"t\" {}}"), "header byte 5"},
      {"missing_comma", raw_file(R"({"__metadata__":{"a":"b" "c":"d"}})"), "expected ',' or '}'"},
      {"trailing_comma", raw_file(R"({"__metadata__":{"a":"b",}})"), "expected a string"},
      {"unquoted_key", raw_file("{t:1}"), "header byte 1"},
      {"trailing_garbage_in_header", raw_file("{} x"), "after the header object"},
      {"two_objects", raw_file("{}{}"), "after the header object"},
      {"nul_padding", raw_file(std::string("{}\0\0", 4)), "after the header object"},
      {"unterminated_string", raw_file("{\"abc"), "unterminated string"},
      {"invalid_escape", raw_file(R"({"a\x":1})"), "invalid escape"},
      {"bad_hex_escape", raw_file(R"({"\u12g4":1})"), "hex digit"},
      {"lone_low_surrogate", raw_file(R"({"\udc00":1})"), "lone low surrogate"},
      {"high_surrogate_alone", raw_file(R"({"\ud800x":1})"), "low surrogate"},
      {"high_surrogate_bad_pair", raw_file(R"({"\ud800\u0041":1})"), "low surrogate"},
      {"raw_control_char", raw_file("{\"a\nb\":1}"), "control character"},
      {"invalid_utf8", raw_file("{\"\xff\":1}"), "UTF-8"},
      {"overlong_utf8", raw_file("{\"\xc0\xaf\":1}"), "UTF-8"},
      {"utf8_surrogate", raw_file("{\"\xed\xa0\x80\":1}"), "UTF-8"},
      {"tensor_not_object", raw_file(one("[1]")), "must be an object"},
      {"tensor_null", raw_file(one("null")), "must be an object"},
      {"unknown_dtype", raw_file(one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"), f32x2),
       "unknown dtype 'F33'"},
      {"dtype_not_string", raw_file(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), f32x2),
       "expected a string"},
      {"lowercase_dtype", raw_file(one(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), f32x2),
       "unknown dtype"},
      {"missing_dtype", raw_file(one(R"({"shape":[2],"data_offsets":[0,8]})"), f32x2), "no dtype"},
      {"missing_shape", raw_file(one(R"({"dtype":"F32","data_offsets":[0,8]})"), f32x2), "no shape"},
      {"missing_offsets", raw_file(one(R"({"dtype":"F32","shape":[2]})"), f32x2), "no data_offsets"},
      {"duplicate_field", raw_file(one(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), f32x2),
       "duplicate field 'dtype'"},
      {"unknown_field", raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1})"), f32x2),
       "unknown field 'x'"},
      {"negative_dimension", raw_file(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), f32x2),
       "negative dimension"},
      {"fractional_dimension", raw_file(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), f32x2),
       "fractional"},
      {"exponent_dimension", raw_file(one(R"({"dtype":"F32","shape":[2e0],"data_offsets":[0,8]})"), f32x2),
       "fractional"},
      {"leading_zero", raw_file(one(R"({"dtype":"F32","shape":[02],"data_offsets":[0,8]})"), f32x2),
       "leading zeros"},
      {"dimension_not_number", raw_file(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), f32x2),
       "expected a dimension"},
      {"shape_not_array", raw_file(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), f32x2),
       "expected '['"},
      {"dimension_overflows_int64",
       raw_file(one(R"({"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]})"), f32x2),
       "integer too large"},
      {"shape_product_overflow",
       raw_file(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"), f32x2),
       "elements"},
      {"shape_over_2_31_elements",
       raw_file(one(R"({"dtype":"U8","shape":[65536,32769],"data_offsets":[0,8]})"), f32x2),
       "elements"},
      {"shape_zero_then_huge", raw_file(one(R"({"dtype":"U8","shape":[0,3000000000],"data_offsets":[0,0]})")),
       "elements"},
      {"rank_over_64", raw_file(one(R"({"dtype":"U8","shape":[)" + [] {
                                       std::string s;
                                       for (int i = 0; i < 65; ++i) s += i ? ",1" : "1";
                                       return s;
                                     }() + R"(],"data_offsets":[0,1]})"),
                                std::string(1, '\0')),
       "more than 64 dimensions"},
      {"offsets_not_matching_shape", raw_file(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), f32x2),
       "need 12"},
      {"offsets_not_matching_dtype", raw_file(one(R"({"dtype":"F64","shape":[2],"data_offsets":[0,8]})"), f32x2),
       "need 16"},
      {"offsets_reversed", raw_file(one(R"({"dtype":"U8","shape":[0],"data_offsets":[8,0]})"), f32x2),
       "end before they begin"},
      {"offsets_past_end", raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), f32x2),
       "run past the end of the data"},
      {"offsets_huge", raw_file(one(R"({"dtype":"U8","shape":[8],"data_offsets":[9223372036854775800,9223372036854775807]})"), f32x2),
       "need 8"},
      {"offsets_negative", raw_file(one(R"({"dtype":"U8","shape":[8],"data_offsets":[-8,0]})"), f32x2),
       "negative offset"},
      {"offsets_three_values", raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), f32x2),
       "more than 2 values"},
      {"offsets_one_value", raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8]})"), f32x2),
       "must hold 2 values"},
      {"offsets_overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::string(12, '\0')),
       "overlap"},
      {"offsets_same_range",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                f32x2),
       "overlap"},
      {"offsets_gap",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                std::string(12, '\0')),
       "belong to no tensor"},
      {"offsets_not_from_zero", raw_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), f32x2),
       "belong to no tensor"},
      {"trailing_data", raw_file(one(ok_entry), f32x2 + "xyz"), "3 bytes after the last tensor"},
      {"data_without_tensors", raw_file("{}", "x"), "1 bytes after the last tensor"},
      {"metadata_number", raw_file(R"({"__metadata__":{"step":3}})"), "must be a string"},
      {"metadata_null", raw_file(R"({"__metadata__":{"step":null}})"), "must be a string"},
      {"metadata_nested", raw_file(R"({"__metadata__":{"a":{"b":"c"}}})"), "must be a string"},
      {"metadata_not_object", raw_file(R"({"__metadata__":"x"})"), "must be an object"},
      {"metadata_array", raw_file(R"({"__metadata__":["x"]})"), "must be an object"},
      {"duplicate_metadata_key", raw_file(R"({"__metadata__":{"a":"1","a":"2"}})"), "duplicate metadata key"},
      {"duplicate_metadata_object", raw_file(R"({"__metadata__":{},"__metadata__":{}})"), "duplicate key"},
      {"duplicate_tensor_name",
       raw_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})"),
       "duplicate tensor name 'a'"},
      {"deep_nesting", raw_file(std::string(10000, '[') + std::string(10000, ']')), "must be a JSON object"},
      {"deep_nesting_in_tensor", raw_file("{\"t\":" + std::string(10000, '{')), "expected a string"},
  };
  return c;
}

TEST(Safetensors, EveryKindOfCorruptFileIsAnInputError) {
  const auto cases = corrupt_files();
  for (const Corrupt& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string msg = decode_error(c.bytes);
    ASSERT_FALSE(msg.empty()) << c.name << " was accepted";
    EXPECT_TRUE(contains(msg, "bad.safetensors: "));
    EXPECT_TRUE(contains(msg, c.expected));
  }
  // Report the count (the brief asks for it; it also guards against cases vanishing).
  EXPECT_GE(cases.size(), 70u);
  std::printf("[ info     ] %zu distinct malformed safetensors inputs\n", cases.size());
}

TEST(Safetensors, SyntaxErrorNamesTheHeaderByte) {
  const std::string msg = decode_error(raw_file("{\"t\" 1}"));
  EXPECT_TRUE(contains(msg, "header byte 5 (file byte 13)")) << msg;
}

TEST(Safetensors, RandomMutationsNeverCrash) {
  // A small deterministic fuzz: flip, insert and delete bytes of a valid file. Each result
  // must decode or be an InputError; anything else (or a crash under ASan) is a bug.
  const std::string good = encode_safetensors(sample_file());
  std::mt19937_64 rng(12345);
  int rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string b = good;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = size_t(rng() % b.size());
      switch (rng() % 3) {
        case 0: b[at] = char(rng()); break;
        case 1: b.insert(b.begin() + long(at), char(rng())); break;
        default: if (b.size() > 1) b.erase(b.begin() + long(at)); break;
      }
    }
    try {
      decode_safetensors(b, "m");
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 3000);
}

TEST(Safetensors, ReadFileErrors) {
  TempDir dir;
  EXPECT_THROW(read_safetensors(dir.file("absent.safetensors")), InputError);
  EXPECT_THROW(read_safetensors(dir.path().string()), InputError);  // a folder
  const std::string p = dir.write("short.safetensors", "abc");
  try {
    read_safetensors(p);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), p);
  }
}

// --------------------------------------------------------------------- model file

MlpLayout test_layout(Activation a = Activation::tanh) {
  return make_mlp_layout(5, {7, 3}, 4, a);
}

std::map<std::string, std::string> model_metadata() {
  return {{"eqpm.version", "0.1.0"}, {"eqpm.lookback", "5"},       {"eqpm.horizon", "4"},
          {"eqpm.activation", "tanh"}, {"eqpm.scaling", "mean"},    {"eqpm.offset", "0"},
          {"eqpm.scale", "123.5"},   {"eqpm.config", "{\"q\": 2}"}};
}

TEST(ModelFile, RoundTripKeepsShapesValuesAndMetadata) {
  TempDir dir;
  const MlpLayout L = test_layout();
  const std::vector<float> params = iota_params(L.parameter_count);
  const std::string path = dir.file("model.safetensors");
  save_model(path, L, params, model_metadata());

  const ModelFile m = load_model(path);
  EXPECT_EQ(m.layout.layers, 3);
  for (int i = 0; i <= 3; ++i) EXPECT_EQ(m.layout.width[i], L.width[i]);
  EXPECT_EQ(m.layout.activation, Activation::tanh);
  EXPECT_EQ(m.layout.parameter_count, L.parameter_count);
  EXPECT_EQ(bytes_of(m.params), bytes_of(params));
  EXPECT_EQ(m.metadata, model_metadata());  // nothing added

  // The file itself follows DESIGN.md 8.1: net.{i}.weight [out, in], net.{i}.bias [out].
  const SafetensorsFile f = read_safetensors(path);
  EXPECT_EQ(f.tensors.size(), 6u);
  ASSERT_NE(f.find("net.0.weight"), nullptr);
  EXPECT_EQ(f.find("net.0.weight")->shape, (std::vector<long long>{7, 5}));
  EXPECT_EQ(f.find("net.0.weight")->dtype, "F32");
  EXPECT_EQ(f.find("net.2.bias")->shape, (std::vector<long long>{4}));
  std::vector<float> w(3 * 7);
  std::memcpy(w.data(), f.find("net.1.weight")->bytes.data(), w.size() * 4);
  EXPECT_EQ(w[0], params[size_t(L.weight_offset[1])]);
  EXPECT_EQ(w[20], params[size_t(L.weight_offset[1]) + 20]);
}

TEST(ModelFile, SaveFillsInOrChecksTheActivation) {
  TempDir dir;
  const MlpLayout L = test_layout(Activation::gelu);
  const auto params = iota_params(L.parameter_count);
  save_model(dir.file("a.safetensors"), L, params, {});
  EXPECT_EQ(load_model(dir.file("a.safetensors")).metadata.at("eqpm.activation"), "gelu");
  EXPECT_THROW(save_model(dir.file("b.safetensors"), L, params, {{"eqpm.activation", "relu"}}),
               Error);
  EXPECT_THROW(save_model(dir.file("c.safetensors"), L, std::vector<float>(3), {}), Error);
  std::vector<float> nan_params = params;
  nan_params[4] = std::nanf("");
  EXPECT_THROW(save_model(dir.file("d.safetensors"), L, nan_params, {}), Error);
}

// A model file from hand-made tensors: valid safetensors, maybe not a valid model.
struct BadModel {
  const char* name;
  std::vector<Tensor> tensors;
  std::map<std::string, std::string> metadata;
  const char* expected;
};

Tensor f32(const std::string& name, std::vector<long long> shape, float fill = 0.5f) {
  long long n = 1;
  for (long long d : shape) n *= d;
  return {name, "F32", shape, bytes_of(std::vector<float>(size_t(n), fill))};
}

std::vector<BadModel> bad_models() {
  const std::map<std::string, std::string> relu = {{"eqpm.activation", "relu"}};
  Tensor w0 = f32("net.0.weight", {3, 2}), b0 = f32("net.0.bias", {3});
  Tensor w1 = f32("net.1.weight", {1, 3}), b1 = f32("net.1.bias", {1});
  Tensor w2 = f32("net.2.weight", {1, 1}), b2 = f32("net.2.bias", {1});
  Tensor w0_f64{"net.0.weight", "F64", {3, 2}, std::string(48, '\0')};
  std::vector<Tensor> nine;
  for (int i = 0; i < 9; ++i) {
    nine.push_back(f32("net." + std::to_string(i) + ".weight", {1, 1}));
    nine.push_back(f32("net." + std::to_string(i) + ".bias", {1}));
  }
  return {
      {"no_tensors", {}, relu, "no tensor net.0.weight"},
      {"only_optimizer", {f32("optimizer.adam_m", {3})}, relu, "no tensor net.0.weight"},
      {"missing_bias", {w0, b0, w1}, relu, "missing tensor net.1.bias"},
      {"gap_in_layers", {w0, b0, w2, b2}, relu, "layers must be numbered from 0"},
      {"orphan_bias", {w0, b0, b1}, relu, "layers must be numbered from 0"},
      {"layers_do_not_chain", {w0, b0, f32("net.1.weight", {1, 4}), b1}, relu, "takes 4 inputs"},
      {"bias_shape", {w0, f32("net.0.bias", {2})}, relu, "expected [3]"},
      {"bias_rank", {w0, f32("net.0.bias", {3, 1})}, relu, "expected [3]"},
      {"weight_rank", {f32("net.0.weight", {6}), b0}, relu, "expected [out, in]"},
      {"weight_f64", {w0_f64, b0}, relu, "must be F32"},
      {"zero_width", {f32("net.0.weight", {0, 2}), f32("net.0.bias", {0})}, relu, "widths must be"},
      {"too_wide", {f32("net.0.weight", {1, 1025}), f32("net.0.bias", {1})}, relu, "widths must be"},
      {"too_many_layers", nine, relu, "at most 8 layers"},
      {"unexpected_tensor", {w0, b0, f32("extra", {1})}, relu, "unexpected tensor 'extra'"},
      {"padded_index", {f32("net.00.weight", {3, 2}), b0}, relu, "unexpected tensor 'net.00.weight'"},
      {"no_activation", {w0, b0}, {}, "eqpm.activation is missing"},
      {"unknown_activation", {w0, b0}, {{"eqpm.activation", "swish"}}, "unknown activation 'swish'"},
      {"nan_weight", {f32("net.0.weight", {3, 2}, std::nanf("")), b0}, relu, "non-finite"},
      {"inf_bias", {w0, f32("net.0.bias", {3}, INFINITY)}, relu, "non-finite"},
  };
}

TEST(ModelFile, EveryKindOfBadModelIsAnInputError) {
  TempDir dir;
  const auto cases = bad_models();
  for (const BadModel& c : cases) {
    SCOPED_TRACE(c.name);
    SafetensorsFile f;
    f.tensors = c.tensors;
    f.metadata = c.metadata;
    const std::string path = dir.file(std::string(c.name) + ".safetensors");
    write_safetensors(path, f);
    try {
      load_model(path);
      ADD_FAILURE() << c.name << " was accepted";
    } catch (const InputError& e) {
      EXPECT_EQ(e.file(), path);
      EXPECT_TRUE(contains(e.what(), c.expected));
    }
  }
  std::printf("[ info     ] %zu distinct malformed model files\n", cases.size());
}

// --------------------------------------------------------------------- checkpoint

CheckpointData sample_checkpoint() {
  CheckpointData c;
  c.layout = test_layout(Activation::relu);
  const long p = c.layout.parameter_count;
  c.state.params = iota_params(p);
  c.state.adam_m.resize(size_t(p));
  c.state.adam_v.resize(size_t(p));
  for (long i = 0; i < p; ++i) {
    c.state.adam_m[size_t(i)] = std::nextafter(float(i) * -1e-3f, 1.0f);
    c.state.adam_v[size_t(i)] = float(i) * 1e-7f + std::numeric_limits<float>::denorm_min();
  }
  c.state.adam_step = 12345678901ull;
  c.state.rbar = {0.1, 1.0 / 3.0, 5e-324, 1e300, 0.0, std::nextafter(2.0, 3.0)};
  c.state.msebar = 0.1 + 0.2;
  c.step = (1ull << 40) + 17;
  c.metadata = {{"eqpm.config", "{\"lr\": 0.001}"}, {"eqpm.version", "0.1.0"}};
  return c;
}

TEST(Checkpoint, RoundTripIsBitExact) {
  TempDir dir;
  const CheckpointData c = sample_checkpoint();
  const std::string path = dir.file("checkpoint.safetensors");
  save_checkpoint(path, c);
  const CheckpointData d = load_checkpoint(path);
  EXPECT_EQ(d.step, c.step);
  EXPECT_EQ(d.state.adam_step, c.state.adam_step);
  EXPECT_EQ(std::memcmp(&d.state.msebar, &c.state.msebar, sizeof(double)), 0);
  EXPECT_EQ(bytes_of(d.state.params), bytes_of(c.state.params));
  EXPECT_EQ(bytes_of(d.state.adam_m), bytes_of(c.state.adam_m));
  EXPECT_EQ(bytes_of(d.state.adam_v), bytes_of(c.state.adam_v));
  EXPECT_EQ(bytes_of(d.state.rbar), bytes_of(c.state.rbar));
  EXPECT_EQ(d.layout.parameter_count, c.layout.parameter_count);
  EXPECT_EQ(d.layout.activation, Activation::relu);
  // The caller's metadata comes back as given, plus the activation filled in on save.
  auto expected = c.metadata;
  expected["eqpm.activation"] = "relu";
  EXPECT_EQ(d.metadata, expected);

  // Saving what was loaded gives the same bytes.
  const std::string again = dir.file("again.safetensors");
  save_checkpoint(again, d);
  EXPECT_EQ(test::read_file(again), test::read_file(path));

  // A checkpoint is also a readable model.
  const ModelFile m = load_model(path);
  EXPECT_EQ(bytes_of(m.params), bytes_of(c.state.params));
  EXPECT_EQ(m.metadata.at("eqpm.step"), std::to_string(c.step));
}

TEST(Checkpoint, EmptyRbarIsOmittedAndSpecialDoublesSurvive) {
  TempDir dir;
  for (const double msebar : {0.0, -0.0, 5e-324, 1.7976931348623157e308, 1.0 / 3.0}) {
    CheckpointData c = sample_checkpoint();
    c.state.rbar.clear();
    c.state.msebar = msebar;
    const std::string path = dir.file("c.safetensors");
    save_checkpoint(path, c);
    EXPECT_EQ(read_safetensors(path).find("state.rbar"), nullptr);
    const CheckpointData d = load_checkpoint(path);
    EXPECT_TRUE(d.state.rbar.empty());
    EXPECT_EQ(std::memcmp(&d.state.msebar, &msebar, sizeof(double)), 0) << msebar;
  }
}

TEST(Checkpoint, SaveRejectsInconsistentState) {
  TempDir dir;
  CheckpointData c = sample_checkpoint();
  c.state.adam_m.pop_back();
  EXPECT_THROW(save_checkpoint(dir.file("a"), c), Error);
  c = sample_checkpoint();
  c.state.params.push_back(0);
  EXPECT_THROW(save_checkpoint(dir.file("b"), c), Error);
  c = sample_checkpoint();
  c.state.msebar = NAN;
  EXPECT_THROW(save_checkpoint(dir.file("c"), c), Error);
  c = sample_checkpoint();
  c.state.rbar[2] = INFINITY;
  EXPECT_THROW(save_checkpoint(dir.file("d"), c), Error);
  EXPECT_FALSE(fs::exists(dir.file("a")) || fs::exists(dir.file("b")) ||
               fs::exists(dir.file("c")) || fs::exists(dir.file("d")));
}

TEST(Checkpoint, EveryKindOfBadCheckpointIsAnInputError) {
  TempDir dir;
  const std::string good_path = dir.file("good.safetensors");
  save_checkpoint(good_path, sample_checkpoint());
  const SafetensorsFile good = read_safetensors(good_path);
  const long long p = sample_checkpoint().layout.parameter_count;

  struct Edit {
    const char* name;
    std::function<void(SafetensorsFile&)> apply;
    std::string expected;
  };
  const auto replace = [](SafetensorsFile& f, Tensor t) {
    for (Tensor& x : f.tensors)
      if (x.name == t.name) x = t;
  };
  const auto drop = [](SafetensorsFile& f, const std::string& name) {
    std::erase_if(f.tensors, [&](const Tensor& t) { return t.name == name; });
  };
  const std::vector<Edit> edits = {
      {"no_adam_m", [&](SafetensorsFile& f) { drop(f, "optimizer.adam_m"); }, "missing tensor optimizer.adam_m"},
      {"no_adam_v", [&](SafetensorsFile& f) { drop(f, "optimizer.adam_v"); }, "missing tensor optimizer.adam_v"},
      {"adam_m_short", [&](SafetensorsFile& f) { replace(f, f32("optimizer.adam_m", {p - 1})); },
       "has shape"},
      {"adam_v_2d", [&](SafetensorsFile& f) { replace(f, f32("optimizer.adam_v", {1, p})); }, "has shape"},
      {"adam_m_f64", [&](SafetensorsFile& f) {
         replace(f, {"optimizer.adam_m", "F64", {p}, std::string(size_t(p) * 8, '\0')});
       }, "dtype F64, expected F32"},
      {"adam_v_negative", [&](SafetensorsFile& f) { replace(f, f32("optimizer.adam_v", {p}, -1.0f)); }, "negative value"},
      {"adam_m_nan", [&](SafetensorsFile& f) { replace(f, f32("optimizer.adam_m", {p}, NAN)); }, "non-finite"},
      {"rbar_f32", [&](SafetensorsFile& f) { replace(f, f32("state.rbar", {6})); }, "must be F64"},
      {"rbar_2d", [&](SafetensorsFile& f) {
         replace(f, {"state.rbar", "F64", {2, 3}, std::string(48, '\0')});
       }, "one dimension"},
      {"rbar_inf", [&](SafetensorsFile& f) {
         replace(f, {"state.rbar", "F64", {1}, bytes_of(std::vector<double>{INFINITY})});
       }, "non-finite"},
      {"no_step", [&](SafetensorsFile& f) { f.metadata.erase("eqpm.step"); }, "eqpm.step is missing"},
      {"step_negative", [&](SafetensorsFile& f) { f.metadata["eqpm.step"] = "-1"; }, "non-negative integer"},
      {"step_text", [&](SafetensorsFile& f) { f.metadata["eqpm.step"] = "12abc"; }, "non-negative integer"},
      {"step_empty", [&](SafetensorsFile& f) { f.metadata["eqpm.step"] = ""; }, "non-negative integer"},
      {"step_overflow", [&](SafetensorsFile& f) { f.metadata["eqpm.step"] = "18446744073709551616"; },
       "non-negative integer"},
      {"no_adam_step", [&](SafetensorsFile& f) { f.metadata.erase("eqpm.adam_step"); }, "eqpm.adam_step is missing"},
      {"adam_step_float", [&](SafetensorsFile& f) { f.metadata["eqpm.adam_step"] = "1.5"; }, "non-negative integer"},
      {"no_msebar", [&](SafetensorsFile& f) { f.metadata.erase("eqpm.msebar"); }, "eqpm.msebar is missing"},
      {"msebar_nan", [&](SafetensorsFile& f) { f.metadata["eqpm.msebar"] = "nan"; }, "finite number"},
      {"msebar_trailing", [&](SafetensorsFile& f) { f.metadata["eqpm.msebar"] = "0.5 "; }, "finite number"},
      {"msebar_overflow", [&](SafetensorsFile& f) { f.metadata["eqpm.msebar"] = "1e999"; }, "finite number"},
      {"layers_do_not_chain", [&](SafetensorsFile& f) { replace(f, f32("net.1.weight", {3, 6})); },
       "takes 6 inputs"},
      // A consistent network of another size than the optimizer state.
      {"network_of_another_size", [&](SafetensorsFile& f) { replace(f, f32("net.0.weight", {7, 4})); },
       "optimizer.adam_m' has shape [" + std::to_string(p) + "], expected ["},
  };
  for (const Edit& e : edits) {
    SCOPED_TRACE(e.name);
    SafetensorsFile f = good;
    e.apply(f);
    const std::string path = dir.file(std::string(e.name) + ".safetensors");
    write_safetensors(path, f);
    try {
      load_checkpoint(path);
      ADD_FAILURE() << e.name << " was accepted";
    } catch (const InputError& err) {
      EXPECT_EQ(err.file(), path);
      EXPECT_TRUE(contains(err.what(), e.expected));
    }
  }
  std::printf("[ info     ] %zu distinct malformed checkpoints\n", edits.size());

  // A truncated checkpoint file at many lengths.
  const std::string bytes = test::read_file(good_path);
  const std::string cut = dir.file("cut.safetensors");
  for (size_t len = 0; len < bytes.size(); len += 1 + len / 16) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc) << bytes.substr(0, len);
    EXPECT_THROW(load_checkpoint(cut), InputError) << len;
  }
}

// --------------------------------------------------------------------- atomic writing

std::vector<std::string> folder_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicFile, ReplacesTheTargetAndLeavesNoTemporaries) {
  TempDir dir;
  const std::string path = dir.file("out.bin");
  write_file_atomic(path, "first");
  EXPECT_EQ(test::read_file(path), "first");
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 7919 % 251);
  write_file_atomic(path, big);
  EXPECT_EQ(test::read_file(path), big);
  write_file_atomic(path, "");
  EXPECT_EQ(test::read_file(path), "");
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, MissingFolderIsAnErrorNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("no/such/folder/out.bin");
  try {
    write_file_atomic(path, "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), path));
    EXPECT_TRUE(contains(e.what(), std::strerror(ENOENT)));
  }
  EXPECT_TRUE(folder_entries(dir.path()).empty());
}

TEST(AtomicFile, ParentIsARegularFileIsAnError) {
  TempDir dir;
  dir.write("plain", "keep me");
  const std::string path = dir.file("plain/out.bin");
  EXPECT_THROW(write_file_atomic(path, "x"), Error);
  EXPECT_EQ(test::read_file(dir.file("plain")), "keep me");
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"plain"});
}

TEST(AtomicFile, TargetIsAFolderIsAnErrorAndNoTemporaryStays) {
  TempDir dir;
  fs::create_directory(dir.path() / "sub");
  dir.write("sub/inside", "x");
  EXPECT_THROW(write_file_atomic(dir.file("sub"), "y"), Error);
  EXPECT_TRUE(fs::is_directory(dir.path() / "sub"));
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"sub"});
}

TEST(AtomicFile, FailedWriteLeavesTheOldFileIntact) {
  // A file-size limit makes write() fail part-way (EFBIG), as a full disk would (ENOSPC).
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_file_atomic(path, "old contents");
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    write_file_atomic(path, std::string(1 << 20, 'n'));
  } catch (const Error& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(contains(message, path));
  EXPECT_TRUE(contains(message, std::strerror(EFBIG)));
  EXPECT_EQ(test::read_file(path), "old contents");
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"model.safetensors"});
}

TEST(AtomicFile, ReadOnlyFolderIsAnErrorAndKeepsTheOldFile) {
  TempDir dir;
  fs::create_directory(dir.path() / "ro");
  const std::string path = dir.file("ro/out.bin");
  write_file_atomic(path, "old");
  ::chmod((dir.path() / "ro").c_str(), 0555);
  const bool writable = ::access((dir.path() / "ro").c_str(), W_OK) == 0;  // root ignores modes
  if (!writable) {
    EXPECT_THROW(write_file_atomic(path, "new"), Error);
    EXPECT_EQ(test::read_file(path), "old");
    EXPECT_THROW(ensure_output_dir((dir.path() / "ro").string(), true), Error);
  }
  ::chmod((dir.path() / "ro").c_str(), 0755);
  if (writable) GTEST_SKIP() << "running with permission to write anywhere (root)";
}

TEST(AtomicFile, SafetensorsWriteIsAtomicToo) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  write_safetensors(path, sample_file());
  const std::string before = test::read_file(path);
  SafetensorsFile bad = sample_file();
  bad.tensors[0].bytes.pop_back();  // inconsistent: rejected before anything is written
  EXPECT_THROW(write_safetensors(path, bad), Error);
  EXPECT_EQ(test::read_file(path), before);
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"m.safetensors"});
}

// --------------------------------------------------------------------- output folder

TEST(OutputDir, CreatesNestedFoldersAndAcceptsEmptyOnes) {
  TempDir dir;
  const std::string out = dir.file("a/b/c");
  ensure_output_dir(out, false);
  EXPECT_TRUE(fs::is_directory(out));
  ensure_output_dir(out, false);  // empty: fine again
  dir.write("a/b/c/metrics.csv", "x");  // not a result that blocks a run
  ensure_output_dir(out, false);
  EXPECT_EQ(folder_entries(out), std::vector<std::string>{"metrics.csv"});  // probe removed
}

TEST(OutputDir, RefusesAFolderWithResultsUnlessOverwrite) {
  for (const char* result : {"model.safetensors", "summary.json", "agents.csv", "sweep.csv",
                             "checkpoint.safetensors"}) {
    SCOPED_TRACE(result);
    TempDir dir;
    const std::string out = dir.file("run");
    ensure_output_dir(out, false);
    dir.write(std::string("run/") + result, "x");
    try {
      ensure_output_dir(out, false);
      ADD_FAILURE() << "accepted a folder holding " << result;
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), out));
      EXPECT_TRUE(contains(e.what(), result));
      EXPECT_TRUE(contains(e.what(), "--overwrite"));
    }
    EXPECT_NO_THROW(ensure_output_dir(out, true));
    EXPECT_EQ(test::read_file(out + "/" + result), "x");  // checking deletes nothing
  }
}

TEST(OutputDir, RemovesOnlyTemporariesOfWritersThatNoLongerExist) {
  TempDir dir;
  const std::string out = dir.file("run");
  ensure_output_dir(out, false);
  const std::string mine = ".checkpoint.safetensors.tmp." + std::to_string(::getpid()) + ".3";
  const std::vector<std::string> keep = {
      mine,                                     // this process: a write in progress
      ".model.safetensors.tmp.1.0",             // pid 1 exists
      ".notes.tmp.txt", "data.tmp.5.1", ".x.tmp.12a.1", ".x.tmp..1", "metrics.csv"};
  for (const auto& f : keep) dir.write("run/" + f, "x");
  // 999999999 is above any pid_max (2^22 on Linux): no such process.
  dir.write("run/.checkpoint.safetensors.tmp.999999999.0", "stale");
  dir.write("run/.agents.csv.tmp.999999998.7", "stale");
  ensure_output_dir(out, true);
  std::vector<std::string> expected = keep;
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> got = folder_entries(out);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
}

TEST(OutputDir, RefusesFilesAndFoldersUnderFiles) {
  TempDir dir;
  dir.write("file", "x");
  EXPECT_THROW(ensure_output_dir(dir.file("file"), true), Error);
  EXPECT_THROW(ensure_output_dir(dir.file("file/sub"), true), Error);
  EXPECT_THROW(ensure_output_dir("", true), Error);
  EXPECT_EQ(test::read_file(dir.file("file")), "x");
}

}  // namespace
}  // namespace eqpm

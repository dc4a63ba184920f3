// Safetensors encoding and decoding, and the model and checkpoint files built on it.
// The header reader is written for hostile input (it is fuzzed): a schema-directed JSON
// parser with no recursion on the input, every integer overflow-checked, every offset
// checked against the file before a single tensor byte is copied.
#include "host/io/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "host/io/atomic_file.hpp"
#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "eqpm/hd.hpp"
#include "host/io/io.hpp"

namespace eqpm {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this code copies it as is");

namespace {

constexpr int kMaxRank = 64;

struct DtypeInfo {
  const char* name;
  int size;
};
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
};

// Index of the first byte that is not part of valid UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are invalid), or npos.
size_t utf8_error(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i < size_t(len)) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += size_t(len);
  }
  return std::string::npos;
}

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  out += json_escape(s);
  out += '"';
}

std::string describe_byte(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  if (c >= 0x20 && c < 0x7F) return std::string("'") + ch + "'";
  char buf[8];
  static const char* const hex = "0123456789abcdef";
  buf[0] = '0';
  buf[1] = 'x';
  buf[2] = hex[c >> 4];
  buf[3] = hex[c & 15];
  buf[4] = 0;
  return std::string("byte ") + buf;
}

// A tensor entry of the header before its data has been checked.
struct HeaderEntry {
  Tensor tensor;           // bytes still empty
  long long begin = -1, end = -1;
  size_t header_pos = 0;   // where its name starts in the header
};

// The safetensors header grammar: one object whose values are either the string-to-string
// "__metadata__" object or tensor objects {"dtype": s, "shape": [ints], "data_offsets":
// [int, int]}. Anything else is rejected at the byte where it was found.
class HeaderParser {
 public:
  HeaderParser(const char* p, size_t n, std::string source)
      : p_(p), n_(n), source_(std::move(source)) {}

  void parse(std::vector<HeaderEntry>& entries, std::map<std::string, std::string>& metadata) {
    skip_ws();
    if (pos_ >= n_) fail("the header is empty; expected a JSON object");
    if (p_[pos_] != '{') fail("the header must be a JSON object, found " + describe_byte(p_[pos_]));
    std::set<std::string> seen;
    bool metadata_seen = false;
    parse_object([&](const std::string& key, size_t key_pos) {
      if (key == "__metadata__") {
        if (metadata_seen) fail_at(key_pos, "duplicate key '__metadata__'");
        metadata_seen = true;
        parse_metadata(metadata);
        return;
      }
      if (!seen.insert(key).second) fail_at(key_pos, "duplicate tensor name '" + key + "'");
      HeaderEntry e;
      e.tensor.name = key;
      e.header_pos = key_pos;
      parse_tensor(e);
      entries.push_back(std::move(e));
    });
    skip_ws();
    if (pos_ != n_)
      fail("unexpected " + describe_byte(p_[pos_]) + " after the header object");
  }

 private:
  [[noreturn]] void fail_at(size_t at, const std::string& msg) const {
    throw InputError(source_, 0, 0,
                     "invalid safetensors header at header byte " + std::to_string(at) +
                         " (file byte " + std::to_string(at + 8) + "): " + msg);
  }
  [[noreturn]] void fail(const std::string& msg) const { fail_at(pos_, msg); }

  void skip_ws() {
    while (pos_ < n_ && (p_[pos_] == ' ' || p_[pos_] == '\t' || p_[pos_] == '\n' ||
                         p_[pos_] == '\r'))
      ++pos_;
  }
  // Next non-blank byte, without consuming it; fails at the end of the header.
  char peek(const char* expected) {
    skip_ws();
    if (pos_ >= n_) fail(std::string("unexpected end of the header, expected ") + expected);
    return p_[pos_];
  }
  void expect(char c, const char* expected) {
    if (peek(expected) != c)
      fail(std::string("expected ") + expected + ", found " + describe_byte(p_[pos_]));
    ++pos_;
  }

  unsigned hex_digit() {
    if (pos_ >= n_) fail("unexpected end of the header inside a \\u escape");
    const char c = p_[pos_];
    unsigned v;
    if (c >= '0' && c <= '9') v = unsigned(c - '0');
    else if (c >= 'a' && c <= 'f') v = unsigned(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v = unsigned(c - 'A' + 10);
    else fail("expected a hex digit in a \\u escape, found " + describe_byte(c));
    ++pos_;
    return v;
  }
  unsigned hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) v = v * 16 + hex_digit();
    return v;
  }

  std::string parse_string() {
    expect('"', "a string");
    const size_t start = pos_ - 1;
    std::string out;
    for (;;) {
      if (pos_ >= n_) fail_at(start, "unterminated string");
      const char c = p_[pos_];
      if (c == '"') {
        ++pos_;
        break;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail("control character " + describe_byte(c) + " in a string (must be escaped)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= n_) fail_at(start, "unterminated string");
      const char e = p_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const size_t esc = pos_ - 2;
          unsigned long cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(esc, "lone low surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (pos_ + 1 >= n_ || p_[pos_] != '\\' || p_[pos_ + 1] != 'u')
              fail_at(esc, "high surrogate not followed by a low surrogate");
            pos_ += 2;
            const unsigned long low = hex4();
            if (low < 0xDC00 || low > 0xDFFF)
              fail_at(esc, "high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail_at(pos_ - 2, "invalid escape \\" + std::string(1, e));
      }
    }
    // Escapes always produce whole code points, so only raw bytes can be invalid.
    if (const size_t bad = utf8_error(out); bad != std::string::npos)
      fail_at(start, "string is not valid UTF-8");
    return out;
  }

  long long parse_integer(const char* what) {
    const char c0 = peek(what);
    const size_t start = pos_;
    bool negative = false;
    if (c0 == '-') {
      negative = true;
      ++pos_;
    }
    if (pos_ >= n_ || p_[pos_] < '0' || p_[pos_] > '9') {
      pos_ = start;
      fail(std::string("expected ") + what + ", found " + describe_byte(p_[pos_]));
    }
    if (p_[pos_] == '0' && pos_ + 1 < n_ && p_[pos_ + 1] >= '0' && p_[pos_ + 1] <= '9')
      fail("leading zeros are not allowed in JSON numbers");
    long long v = 0;
    while (pos_ < n_ && p_[pos_] >= '0' && p_[pos_] <= '9') {
      const int d = p_[pos_] - '0';
      if (v > (LLONG_MAX - d) / 10) fail_at(start, "integer too large");
      v = v * 10 + d;
      ++pos_;
    }
    if (pos_ < n_ && (p_[pos_] == '.' || p_[pos_] == 'e' || p_[pos_] == 'E'))
      fail_at(start, std::string("expected ") + what + ", found a fractional number");
    return negative ? -v : v;
  }

  // Calls on_key(key, key_pos) with the position at the value; on_key parses the value.
  template <class F>
  void parse_object(F&& on_key) {
    expect('{', "'{'");
    if (peek("a key or '}'") == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      const size_t key_pos = pos_;
      const std::string key = parse_string();
      expect(':', "':'");
      on_key(key, key_pos);
      const char c = peek("',' or '}'");
      ++pos_;
      if (c == '}') return;
      if (c != ',') {
        --pos_;
        fail("expected ',' or '}', found " + describe_byte(c));
      }
    }
  }

  template <class F>
  void parse_array(F&& on_element) {
    expect('[', "'['");
    if (peek("a value or ']'") == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      on_element();
      const char c = peek("',' or ']'");
      ++pos_;
      if (c == ']') return;
      if (c != ',') {
        --pos_;
        fail("expected ',' or ']', found " + describe_byte(c));
      }
    }
  }

  void parse_metadata(std::map<std::string, std::string>& metadata) {
    if (peek("an object") != '{')
      fail("__metadata__ must be an object of strings, found " + describe_byte(p_[pos_]));
    parse_object([&](const std::string& key, size_t key_pos) {
      if (metadata.count(key)) fail_at(key_pos, "duplicate metadata key '" + key + "'");
      if (peek("a string") != '"')
        fail("metadata value of '" + key + "' must be a string, found " +
             describe_byte(p_[pos_]));
      metadata[key] = parse_string();
    });
  }

  void parse_tensor(HeaderEntry& e) {
    const std::string& name = e.tensor.name;
    if (peek("an object") != '{')
      fail("tensor '" + name + "' must be an object, found " + describe_byte(p_[pos_]));
    bool has_dtype = false, has_shape = false, has_offsets = false;
    parse_object([&](const std::string& field, size_t field_pos) {
      if (field == "dtype") {
        if (has_dtype) fail_at(field_pos, "duplicate field 'dtype' in tensor '" + name + "'");
        has_dtype = true;
        const size_t value_pos = (skip_ws(), pos_);
        e.tensor.dtype = parse_string();
        if (safetensors_dtype_size(e.tensor.dtype) == 0)
          fail_at(value_pos, "unknown dtype '" + e.tensor.dtype + "' of tensor '" + name + "'");
      } else if (field == "shape") {
        if (has_shape) fail_at(field_pos, "duplicate field 'shape' in tensor '" + name + "'");
        has_shape = true;
        parse_array([&] {
          skip_ws();
          const size_t dim_pos = pos_;
          if (e.tensor.shape.size() >= size_t(kMaxRank))
            fail_at(dim_pos, "shape of tensor '" + name + "' has more than " +
                                 std::to_string(kMaxRank) + " dimensions");
          const long long d = parse_integer("a dimension (integer)");
          if (d < 0) fail_at(dim_pos, "negative dimension in the shape of tensor '" + name + "'");
          e.tensor.shape.push_back(d);
        });
      } else if (field == "data_offsets") {
        if (has_offsets)
          fail_at(field_pos, "duplicate field 'data_offsets' in tensor '" + name + "'");
        has_offsets = true;
        int count = 0;
        parse_array([&] {
          skip_ws();
          const size_t at = pos_;
          if (count >= 2) fail_at(at, "data_offsets of tensor '" + name + "' has more than 2 values");
          const long long v = parse_integer("an offset (integer)");
          if (v < 0) fail_at(at, "negative offset in data_offsets of tensor '" + name + "'");
          (count == 0 ? e.begin : e.end) = v;
          ++count;
        });
        if (count != 2) fail("data_offsets of tensor '" + name + "' must hold 2 values");
      } else {
        fail_at(field_pos, "unknown field '" + field + "' in tensor '" + name + "'");
      }
    });
    if (!has_dtype) fail_at(e.header_pos, "tensor '" + name + "' has no dtype");
    if (!has_shape) fail_at(e.header_pos, "tensor '" + name + "' has no shape");
    if (!has_offsets) fail_at(e.header_pos, "tensor '" + name + "' has no data_offsets");
  }

  const char* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string source_;
};

// Elements of a shape, or -1 when it exceeds kSafetensorsMaxElements.
long long element_count(const std::vector<long long>& shape) {
  long long n = 1;
  for (const long long d : shape) {
    if (d < 0 || d > kSafetensorsMaxElements) return -1;
    n *= d;  // both factors <= 2^31: no overflow
    if (n > kSafetensorsMaxElements) return -1;
  }
  return n;
}

std::string shape_text(const std::vector<long long>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// --- model and checkpoint helpers

[[noreturn]] void bad_file(const std::string& path, const std::string& msg) {
  throw InputError(path, 0, 0, msg);
}

std::string format_double(double v) { return format_number(v); }

template <class T>
Tensor make_tensor(std::string name, const char* dtype, std::vector<long long> shape,
                   const T* data, size_t count) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.assign(reinterpret_cast<const char*>(data), count * sizeof(T));
  return t;
}

// Throws Error when any value is NaN or infinite: a file we would refuse to read back.
template <class T>
void require_finite_to_save(const std::string& path, const std::string& what, const T* v,
                            size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      throw Error("refusing to write '" + path + "': " + what + "[" + std::to_string(i) +
                  "] is not finite");
}

template <class T>
void require_finite_loaded(const std::string& path, const std::string& what, const T* v,
                           size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]))
      bad_file(path, "tensor '" + what + "' holds a non-finite value at element " +
                         std::to_string(i));
}

// A tensor's values after checking its dtype and shape.
template <class T>
std::vector<T> tensor_values(const std::string& path, const Tensor& t, const char* dtype,
                             const std::vector<long long>& shape) {
  if (t.dtype != dtype)
    bad_file(path, "tensor '" + t.name + "' has dtype " + t.dtype + ", expected " + dtype);
  if (t.shape != shape)
    bad_file(path, "tensor '" + t.name + "' has shape " + shape_text(t.shape) + ", expected " +
                       shape_text(shape));
  std::vector<T> v(t.bytes.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.bytes.data(), v.size() * sizeof(T));
  return v;
}

// Checks a layout before its offsets are used to read `params`.
void check_layout_for_save(const std::string& path, const MlpLayout& L, size_t param_count) {
  if (L.layers < 1 || L.layers > kMaxLayers)
    throw Error("cannot write '" + path + "': layout has " + std::to_string(L.layers) +
                " layers");
  if (param_count != size_t(L.parameter_count))
    throw Error("cannot write '" + path + "': " + std::to_string(param_count) +
                " parameters for a layout of " + std::to_string(L.parameter_count));
  for (int l = 0; l < L.layers; ++l) {
    const long in = L.width[l], out = L.width[l + 1];
    if (in < 1 || out < 1 || L.weight_offset[l] < 0 || L.bias_offset[l] < 0 ||
        L.weight_offset[l] + in * out > L.parameter_count ||
        L.bias_offset[l] + out > L.parameter_count)
      throw Error("cannot write '" + path + "': layer " + std::to_string(l) +
                  " does not fit the parameter array");
  }
}

std::map<std::string, std::string> with_activation(const std::string& path, const MlpLayout& L,
                                                   std::map<std::string, std::string> meta) {
  const auto it = meta.find("eqpm.activation");
  if (it == meta.end()) {
    meta["eqpm.activation"] = activation_name(L.activation);
  } else {
    Activation a;
    if (!parse_activation(it->second, &a) || a != L.activation)
      throw Error("cannot write '" + path + "': metadata eqpm.activation '" + it->second +
                  "' disagrees with the layout's activation " + activation_name(L.activation));
  }
  return meta;
}

std::vector<Tensor> network_tensors(const std::string& path, const MlpLayout& L,
                                    const std::vector<float>& params) {
  check_layout_for_save(path, L, params.size());
  std::vector<Tensor> out;
  for (int l = 0; l < L.layers; ++l) {
    const long in = L.width[l], o = L.width[l + 1];
    const std::string prefix = "net." + std::to_string(l);
    const float* w = params.data() + L.weight_offset[l];
    const float* b = params.data() + L.bias_offset[l];
    require_finite_to_save(path, prefix + ".weight", w, size_t(in * o));
    require_finite_to_save(path, prefix + ".bias", b, size_t(o));
    out.push_back(make_tensor(prefix + ".weight", "F32", {o, in}, w, size_t(in * o)));
    out.push_back(make_tensor(prefix + ".bias", "F32", {o}, b, size_t(o)));
  }
  return out;
}

bool is_checkpoint_tensor(const std::string& name) {
  return name == "optimizer.adam_m" || name == "optimizer.adam_v" || name == "state.rbar" ||
         name == "state.param_sum" || name == "state.best_params";
}

// "net.<i>.weight" / "net.<i>.bias" with a canonical decimal i: returns i, else -1.
int network_index(const std::string& name, bool* is_weight) {
  if (name.rfind("net.", 0) != 0) return -1;
  size_t i = 4;
  long v = 0;
  const size_t digits_start = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && i - digits_start < 6)
    v = v * 10 + (name[i++] - '0');
  if (i == digits_start || (name[digits_start] == '0' && i - digits_start > 1)) return -1;
  const std::string rest = name.substr(i);
  if (rest == ".weight") *is_weight = true;
  else if (rest == ".bias") *is_weight = false;
  else return -1;
  return int(v);
}

ModelFile model_from(const std::string& path, const SafetensorsFile& f) {
  const Tensor* weight[kMaxLayers] = {};
  const Tensor* bias[kMaxLayers] = {};
  for (const Tensor& t : f.tensors) {
    bool is_weight = false;
    const int i = network_index(t.name, &is_weight);
    if (i < 0) {
      if (is_checkpoint_tensor(t.name)) continue;
      bad_file(path, "unexpected tensor '" + t.name +
                         "' (a model holds net.<i>.weight and net.<i>.bias)");
    }
    if (i >= kMaxLayers)
      bad_file(path, "tensor '" + t.name + "': at most " + std::to_string(kMaxLayers) +
                         " layers are supported");
    (is_weight ? weight : bias)[i] = &t;
  }
  int layers = 0;
  while (layers < kMaxLayers && weight[layers]) ++layers;
  if (layers == 0) bad_file(path, "no tensor net.0.weight: not an eqpm model");
  for (int l = 0; l < kMaxLayers; ++l) {
    const std::string prefix = "net." + std::to_string(l);
    if (l >= layers && (weight[l] || bias[l]))
      bad_file(path, "tensor " + prefix + (weight[l] ? ".weight" : ".bias") + " but no net." +
                         std::to_string(layers) + ".weight: layers must be numbered from 0");
    if (l < layers && !bias[l]) bad_file(path, "missing tensor " + prefix + ".bias");
  }

  int width[kMaxLayers + 1] = {};
  for (int l = 0; l < layers; ++l) {
    const Tensor& w = *weight[l];
    const Tensor& b = *bias[l];
    if (w.dtype != "F32" || b.dtype != "F32")
      bad_file(path, "layer " + std::to_string(l) + " must be F32, found " +
                         (w.dtype != "F32" ? w.dtype : b.dtype));
    if (w.shape.size() != 2)
      bad_file(path, "tensor '" + w.name + "' has shape " + shape_text(w.shape) +
                         ", expected [out, in]");
    const long long out = w.shape[0], in = w.shape[1];
    if (out < 1 || out > kMaxWidth || in < 1 || in > kMaxWidth)
      bad_file(path, "tensor '" + w.name + "' has shape " + shape_text(w.shape) +
                         ": widths must be in [1, " + std::to_string(kMaxWidth) + "]");
    if (l == 0) width[0] = int(in);
    else if (in != width[l])
      bad_file(path, "tensor '" + w.name + "' takes " + std::to_string(in) +
                         " inputs but layer " + std::to_string(l - 1) + " gives " +
                         std::to_string(width[l]));
    width[l + 1] = int(out);
    if (b.shape != std::vector<long long>{out})
      bad_file(path, "tensor '" + b.name + "' has shape " + shape_text(b.shape) +
                         ", expected [" + std::to_string(out) + "]");
  }

  const auto act = f.metadata.find("eqpm.activation");
  if (act == f.metadata.end()) bad_file(path, "metadata eqpm.activation is missing");
  Activation activation;
  if (!parse_activation(act->second, &activation))
    bad_file(path, "metadata eqpm.activation: unknown activation '" + act->second + "'");

  ModelFile m;
  try {
    m.layout = make_mlp_layout(width[0], std::vector<int>(width + 1, width + layers),
                               width[layers], activation);
  } catch (const Error& e) {
    bad_file(path, std::string("invalid network shape: ") + e.what());
  }
  if (m.layout.layers != layers || m.layout.parameter_count < 0)
    bad_file(path, "invalid network shape");
  m.params.assign(size_t(m.layout.parameter_count), 0.0f);
  for (int l = 0; l < layers; ++l) {
    const Tensor& w = *weight[l];
    const Tensor& b = *bias[l];
    const size_t wn = w.bytes.size() / 4, bn = b.bytes.size() / 4;
    if (m.layout.weight_offset[l] < 0 || m.layout.bias_offset[l] < 0 ||
        size_t(m.layout.weight_offset[l]) + wn > m.params.size() ||
        size_t(m.layout.bias_offset[l]) + bn > m.params.size())
      bad_file(path, "invalid network shape");
    float* wp = m.params.data() + m.layout.weight_offset[l];
    float* bp = m.params.data() + m.layout.bias_offset[l];
    std::memcpy(wp, w.bytes.data(), wn * 4);
    std::memcpy(bp, b.bytes.data(), bn * 4);
    require_finite_loaded(path, w.name, wp, wn);
    require_finite_loaded(path, b.name, bp, bn);
  }
  m.metadata = f.metadata;
  return m;
}

std::uint64_t metadata_u64(const std::string& path, const std::map<std::string, std::string>& m,
                           const std::string& key) {
  const auto it = m.find(key);
  if (it == m.end()) bad_file(path, "metadata " + key + " is missing");
  const std::string& s = it->second;
  std::uint64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
    bad_file(path, "metadata " + key + ": expected a non-negative integer, got '" + s + "'");
  return v;
}

double metadata_double(const std::string& path, const std::map<std::string, std::string>& m,
                       const std::string& key) {
  const auto it = m.find(key);
  if (it == m.end()) bad_file(path, "metadata " + key + " is missing");
  const std::string& s = it->second;
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v))
    bad_file(path, "metadata " + key + ": expected a finite number, got '" + s + "'");
  return v;
}

}  // namespace

int safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.name) return d.size;
  return 0;
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const Tensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::string encode_safetensors(const SafetensorsFile& file) {
  std::string header = "{";
  bool first = true;
  if (!file.metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : file.metadata) {
      if (utf8_error(k) != std::string::npos || utf8_error(v) != std::string::npos)
        throw Error("safetensors metadata '" + k + "' is not valid UTF-8");
      if (!first) header += ',';
      first = false;
      append_json_string(header, k);
      header += ':';
      append_json_string(header, v);
    }
    header += '}';
    first = false;
  }
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const Tensor& t : file.tensors) {
    if (t.name.empty() || t.name == "__metadata__" || utf8_error(t.name) != std::string::npos)
      throw Error("invalid safetensors tensor name '" + t.name + "'");
    if (!names.insert(t.name).second) throw Error("duplicate tensor name '" + t.name + "'");
    const int size = safetensors_dtype_size(t.dtype);
    if (size == 0) throw Error("tensor '" + t.name + "': unknown dtype '" + t.dtype + "'");
    const long long n = element_count(t.shape);
    if (n < 0) throw Error("tensor '" + t.name + "': invalid shape " + shape_text(t.shape));
    if (std::uint64_t(n) * std::uint64_t(size) != t.bytes.size())
      throw Error("tensor '" + t.name + "': " + std::to_string(t.bytes.size()) +
                  " bytes for dtype " + t.dtype + " and shape " + shape_text(t.shape));
    if (!first) header += ',';
    first = false;
    append_json_string(header, t.name);
    header += ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i)
      header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += '}';
  // Pad so the data starts 8-byte aligned, as the reference writer does.
  while (header.size() % 8 != 0) header += ' ';

  std::string out;
  out.reserve(8 + header.size() + offset);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out += char((n >> (8 * i)) & 0xFF);
  out += header;
  for (const Tensor& t : file.tensors) out += t.bytes;
  return out;
}

SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& source) {
  const auto fail = [&](const std::string& msg) { throw InputError(source, 0, 0, msg); };
  if (bytes.size() < 8)
    fail("not a safetensors file: " + std::to_string(bytes.size()) +
         " bytes, shorter than the 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[size_t(i)]);
  if (n > kSafetensorsMaxHeader)
    fail("safetensors header length " + std::to_string(n) + " exceeds the limit of " +
         std::to_string(kSafetensorsMaxHeader) + " bytes");
  if (n > bytes.size() - 8)
    fail("safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
         std::to_string(bytes.size()) + " bytes): truncated?");

  SafetensorsFile out;
  std::vector<HeaderEntry> entries;
  HeaderParser(bytes.data() + 8, size_t(n), source).parse(entries, out.metadata);

  const std::uint64_t data_start = 8 + n;
  const std::uint64_t data_size = bytes.size() - data_start;
  const auto where = [](const HeaderEntry& e) {
    return "tensor '" + e.tensor.name + "' (header byte " + std::to_string(e.header_pos) + ")";
  };
  for (const HeaderEntry& e : entries) {
    const long long count = element_count(e.tensor.shape);
    if (count < 0)
      fail(where(e) + ": shape " + shape_text(e.tensor.shape) + " has more than " +
           std::to_string(kSafetensorsMaxElements) + " elements");
    if (e.end < e.begin)
      fail(where(e) + ": data_offsets [" + std::to_string(e.begin) + ", " +
           std::to_string(e.end) + "] end before they begin");
    const std::uint64_t expected =
        std::uint64_t(count) * std::uint64_t(safetensors_dtype_size(e.tensor.dtype));
    if (std::uint64_t(e.end - e.begin) != expected)
      fail(where(e) + ": data_offsets [" + std::to_string(e.begin) + ", " +
           std::to_string(e.end) + "] span " + std::to_string(e.end - e.begin) +
           " bytes but dtype " + e.tensor.dtype + " and shape " + shape_text(e.tensor.shape) +
           " need " + std::to_string(expected));
    if (std::uint64_t(e.end) > data_size)
      fail(where(e) + ": data_offsets [" + std::to_string(e.begin) + ", " +
           std::to_string(e.end) + "] run past the end of the data (" +
           std::to_string(data_size) + " bytes after the header): truncated?");
  }
  // The tensors must tile the data exactly: no overlap, no gap, nothing after the last.
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(entries[a].begin, entries[a].end) < std::pair(entries[b].begin, entries[b].end);
  });
  std::uint64_t covered = 0;
  const HeaderEntry* previous = nullptr;
  for (const size_t i : order) {
    const HeaderEntry& e = entries[i];
    if (std::uint64_t(e.begin) < covered)
      fail(where(e) + ": bytes [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
           ") overlap those of tensor '" + (previous ? previous->tensor.name : "") + "'");
    if (std::uint64_t(e.begin) > covered)
      fail("data bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
           ") belong to no tensor (file bytes " + std::to_string(data_start + covered) + "..)");
    covered = std::uint64_t(e.end);
    previous = &e;
  }
  if (covered != data_size)
    fail(std::to_string(data_size - covered) + " bytes after the last tensor's data (file byte " +
         std::to_string(data_start + covered) + "): trailing garbage or a wrong header");

  out.tensors.reserve(entries.size());
  for (HeaderEntry& e : entries) {
    e.tensor.bytes.assign(bytes, size_t(data_start) + size_t(e.begin),
                          size_t(e.end - e.begin));
    out.tensors.push_back(std::move(e.tensor));
  }
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw InputError(path, 0, 0, std::string("cannot open: ") + std::strerror(err));
  }
  std::string bytes;
  int err = 0;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    err = errno;
  } else if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path, 0, 0, "not a regular file");
  } else {
    bytes.resize(size_t(st.st_size));
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t r = ::read(fd, bytes.data() + done, bytes.size() - done);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        err = errno;
        break;
      }
      if (r == 0) break;  // shrank while we read: decode what is there
      done += size_t(r);
    }
    bytes.resize(done);
  }
  ::close(fd);
  if (err != 0) throw InputError(path, 0, 0, std::string("cannot read: ") + std::strerror(err));
  return decode_safetensors(bytes, path);
}

void write_safetensors(const std::string& path, const SafetensorsFile& file) {
  write_file_atomic(path, encode_safetensors(file));
}

void save_model(const std::string& path, const MlpLayout& layout,
                const std::vector<float>& params,
                const std::map<std::string, std::string>& metadata) {
  SafetensorsFile f;
  f.tensors = network_tensors(path, layout, params);
  f.metadata = with_activation(path, layout, metadata);
  write_safetensors(path, f);
}

ModelFile load_model(const std::string& path) { return model_from(path, read_safetensors(path)); }

void save_checkpoint(const std::string& path, const CheckpointData& data) {
  const BackendState& s = data.state;
  const size_t p = s.params.size();
  if (s.adam_m.size() != p || s.adam_v.size() != p)
    throw Error("cannot write '" + path + "': Adam moments of " + std::to_string(s.adam_m.size()) +
                " and " + std::to_string(s.adam_v.size()) + " values for " + std::to_string(p) +
                " parameters");
  if (!std::isfinite(s.msebar)) throw Error("refusing to write '" + path + "': msebar is not finite");
  SafetensorsFile f;
  f.tensors = network_tensors(path, data.layout, s.params);
  require_finite_to_save(path, "optimizer.adam_m", s.adam_m.data(), p);
  require_finite_to_save(path, "optimizer.adam_v", s.adam_v.data(), p);
  require_finite_to_save(path, "state.rbar", s.rbar.data(), s.rbar.size());
  const long long pl = static_cast<long long>(p);
  f.tensors.push_back(make_tensor("optimizer.adam_m", "F32", {pl}, s.adam_m.data(), p));
  f.tensors.push_back(make_tensor("optimizer.adam_v", "F32", {pl}, s.adam_v.data(), p));
  if (!s.rbar.empty())
    f.tensors.push_back(make_tensor("state.rbar", "F64", {static_cast<long long>(s.rbar.size())},
                                    s.rbar.data(), s.rbar.size()));
  const TrainerState& t = data.trainer;
  if ((!t.param_sum.empty() && t.param_sum.size() != p) ||
      (!t.best_params.empty() && t.best_params.size() != p))
    throw Error("cannot write '" + path + "': trainer state of another parameter count");
  if (!t.param_sum.empty()) {
    require_finite_to_save(path, "state.param_sum", t.param_sum.data(), p);
    f.tensors.push_back(make_tensor("state.param_sum", "F64", {pl}, t.param_sum.data(), p));
  }
  if (!t.best_params.empty()) {
    require_finite_to_save(path, "state.best_params", t.best_params.data(), p);
    f.tensors.push_back(make_tensor("state.best_params", "F32", {pl}, t.best_params.data(), p));
  }
  f.metadata = with_activation(path, data.layout, data.metadata);
  f.metadata["eqpm.param_count"] = std::to_string(t.param_count);
  if (!t.best_params.empty()) {
    if (!std::isfinite(t.best_score) || t.best_epoch < 0)
      throw Error("cannot write '" + path + "': best epoch's score or number is not valid");
    f.metadata["eqpm.best_score"] = format_double(t.best_score);
    f.metadata["eqpm.best_epoch"] = std::to_string(t.best_epoch);
  }
  f.metadata["eqpm.step"] = std::to_string(data.step);
  f.metadata["eqpm.adam_step"] = std::to_string(s.adam_step);
  f.metadata["eqpm.msebar"] = format_double(s.msebar);
  write_safetensors(path, f);
}

CheckpointData load_checkpoint(const std::string& path) {
  const SafetensorsFile f = read_safetensors(path);
  ModelFile m = model_from(path, f);
  CheckpointData c;
  c.layout = m.layout;
  c.state.params = std::move(m.params);
  const long long p = c.layout.parameter_count;
  for (const char* name : {"optimizer.adam_m", "optimizer.adam_v"})
    if (!f.find(name)) bad_file(path, std::string("missing tensor ") + name + ": not a checkpoint");
  c.state.adam_m = tensor_values<float>(path, *f.find("optimizer.adam_m"), "F32", {p});
  c.state.adam_v = tensor_values<float>(path, *f.find("optimizer.adam_v"), "F32", {p});
  require_finite_loaded(path, "optimizer.adam_m", c.state.adam_m.data(), c.state.adam_m.size());
  require_finite_loaded(path, "optimizer.adam_v", c.state.adam_v.data(), c.state.adam_v.size());
  for (size_t i = 0; i < c.state.adam_v.size(); ++i)
    if (c.state.adam_v[i] < 0.0f)
      bad_file(path, "tensor 'optimizer.adam_v' holds a negative value at element " +
                         std::to_string(i));
  if (const Tensor* r = f.find("state.rbar")) {
    if (r->dtype != "F64" || r->shape.size() != 1)
      bad_file(path, "tensor 'state.rbar' must be F64 with one dimension, found " + r->dtype +
                         " " + shape_text(r->shape));
    c.state.rbar = tensor_values<double>(path, *r, "F64", r->shape);
    require_finite_loaded(path, "state.rbar", c.state.rbar.data(), c.state.rbar.size());
  }
  for (const char* name : {"state.param_sum", "state.best_params"})
    if (const Tensor* r = f.find(name)) {
      if (r->shape.size() != 1 || r->shape[0] != p)
        bad_file(path, std::string("tensor '") + name + "' must have shape [" + std::to_string(p) +
                           "], found " + shape_text(r->shape));
    }
  if (const Tensor* r = f.find("state.param_sum")) {
    c.trainer.param_sum = tensor_values<double>(path, *r, "F64", {p});
    require_finite_loaded(path, "state.param_sum", c.trainer.param_sum.data(), c.trainer.param_sum.size());
  }
  if (const Tensor* r = f.find("state.best_params")) {
    c.trainer.best_params = tensor_values<float>(path, *r, "F32", {p});
    require_finite_loaded(path, "state.best_params", c.trainer.best_params.data(), c.trainer.best_params.size());
    c.trainer.best_score = metadata_double(path, f.metadata, "eqpm.best_score");
    const std::uint64_t e = metadata_u64(path, f.metadata, "eqpm.best_epoch");
    if (e > 100000) bad_file(path, "metadata eqpm.best_epoch out of range");
    c.trainer.best_epoch = static_cast<int>(e);
  }
  // Checkpoints written before the trainer kept state of its own have no count.
  if (f.metadata.count("eqpm.param_count"))
    c.trainer.param_count = metadata_u64(path, f.metadata, "eqpm.param_count");
  if ((c.trainer.param_count > 0) != !c.trainer.param_sum.empty())
    bad_file(path, "state.param_sum and eqpm.param_count disagree");
  c.step = metadata_u64(path, f.metadata, "eqpm.step");
  c.state.adam_step = metadata_u64(path, f.metadata, "eqpm.adam_step");
  c.state.msebar = metadata_double(path, f.metadata, "eqpm.msebar");
  c.metadata = std::move(m.metadata);
  for (const char* key : {"eqpm.step", "eqpm.adam_step", "eqpm.msebar", "eqpm.param_count",
                          "eqpm.best_score", "eqpm.best_epoch"})
    c.metadata.erase(key);
  return c;
}

}  // namespace eqpm

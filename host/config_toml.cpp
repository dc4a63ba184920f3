// TOML configuration files: checks each value's TOML type against the option registry,
// then hands its text to set_option with the value's file:line:col. toml++ is included
// here only (it is slow to compile).
#include "host/config_toml.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#if __has_include(<toml++/toml.hpp>)
#include <toml++/toml.hpp>
#else
#include <toml++/toml.h>  // Debian's libtomlplusplus-dev names the header toml.h
#endif

#include "eqpm/error.hpp"
#include "host/io/io.hpp"

namespace eqpm {
namespace {

constexpr const char* kSections[] = {"data", "objective", "optimiser", "model", "population",
                                     "run"};

constexpr const char* kTablesHint =
    "the tables are data, population, model, objective, optimiser and run";

// The registry lists its keys table by table; each table starts at its key here.
constexpr std::pair<const char*, const char*> kTableStarts[] = {
    {"series", "data"},  {"population", "population"}, {"lookback", "model"},
    {"q", "objective"},  {"seed", "optimiser"},        {"backend", "run"}};

std::string table_of(const std::string& key) {
  std::string table = "data";
  for (const auto& o : option_registry()) {
    for (const auto& [first, name] : kTableStarts)
      if (o.key == first) table = name;
    if (o.key == key) return table;
  }
  return "";
}

bool is_section(std::string_view name) {
  for (const char* s : kSections)
    if (name == s) return true;
  return false;
}

std::string position(const std::string& path, const toml::source_position& p) {
  if (p.line == 0) return path;
  return path + ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
}

const char* found_type(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

std::string expected_type(const std::string& type) {
  if (type == "int") return "an integer";
  if (type == "float") return "a number";
  if (type == "bool") return "a boolean (true or false)";
  if (type == "string") return "a string";
  if (type == "date") return "a date (2022-07-01) or a string such as \"2022-07-01 00:00\"";
  if (type == "range") return "an array of 2 numbers [LO, HI]";
  if (type == "int-list") return "an array of integers";
  if (type == "float-list") return "an array of numbers";
  if (type == "float-or-auto") return "a number or \"auto\"";
  return "a string, one of " + type;
}

std::string number_text(const toml::node& n) {
  if (const auto* i = n.as_integer()) return std::to_string(i->get());
  return format_number(n.as_floating_point()->get());
}

std::string suggestion(const std::string& key) {
  if (key.size() > 64) return "";
  std::string best;
  size_t best_d = 3;  // only close misspellings
  for (const auto& o : option_registry()) {
    const size_t d = edit_distance(key, o.key);
    if (d < best_d) {
      best_d = d;
      best = o.key;
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

// The text set_option expects for `value`, after checking its TOML type against `spec`.
std::string value_text(const std::string& path, const std::string& key, const OptionSpec& spec,
                       const toml::node& value) {
  const auto wrong = [&](const std::string& found, const toml::node& at) {
    throw ConfigError(position(path, at.source().begin) + ": " + key + ": expected " +
                      expected_type(spec.type) + ", found " + found);
  };
  const std::string& t = spec.type;
  if (t == "int") {
    if (!value.is_integer()) wrong(found_type(value), value);
    return number_text(value);
  }
  if (t == "float") {
    if (!value.is_number()) wrong(found_type(value), value);
    return number_text(value);
  }
  if (t == "float-or-auto") {
    if (value.is_number()) return number_text(value);
    if (!value.is_string()) wrong(found_type(value), value);
    return value.as_string()->get();
  }
  if (t == "bool") {
    if (!value.is_boolean()) wrong(found_type(value), value);
    return value.as_boolean()->get() ? "true" : "false";
  }
  if (t == "range") {
    const toml::array* a = value.as_array();
    if (!a) wrong(found_type(value), value);
    if (a->size() != 2)
      wrong("an array of " + std::to_string(a->size()) + " value" + (a->size() == 1 ? "" : "s"),
            value);
    for (const toml::node& e : *a)
      if (!e.is_number()) wrong(std::string("an array holding ") + found_type(e), e);
    return number_text(*a->get(0)) + "," + number_text(*a->get(1));
  }
  if (t == "int-list" || t == "float-list") {
    const toml::array* a = value.as_array();
    if (!a) wrong(found_type(value), value);
    const bool integers = t == "int-list";
    std::string s;
    for (const toml::node& e : *a) {
      if (integers ? !e.is_integer() : !e.is_number())
        wrong(std::string("an array holding ") + found_type(e), e);
      s += (s.empty() ? "" : ",") + number_text(e);
    }
    return s;
  }
  if (t == "date" && value.is_date()) {
    const toml::date d = value.as_date()->get();
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", int(d.year), int(d.month), int(d.day));
    return buf;
  }
  // "string", "date" and enums "a|b|c"
  if (!value.is_string()) wrong(found_type(value), value);
  return value.as_string()->get();
}

struct Entry {
  std::string section;        // empty at the top level
  std::string key;
  const toml::node* value;
  toml::source_position pos;  // of the key
  bool unknown_table;
};

toml::source_position key_position(const toml::key& k, const toml::node& v) {
  return k.source().begin.line != 0 ? k.source().begin : v.source().begin;
}

// toml++ 3.3 (Debian's) reaches __builtin_unreachable on some non-ASCII code points where
// whitespace may stand (upstream issues 190 and 295, fixed after that release): a file
// holding one must be refused before the parser sees it. The affected code points are
// those its whitespace table maps to a wrong bucket; we refuse them anywhere in the file
// with their position, which costs nothing for configuration files in practice.
bool toml_parser_cannot_take(char32_t c) {
  if (c <= 0xA0 || c >= 0xFEFF || c == 0x3000) return false;
  const unsigned long long bucket = (static_cast<unsigned long long>(c) - 0xA0ull) / 0x3FAull;
  if ((1ull << bucket) & 0x7FFFFFFFFFFFF75Eull) return false;
  return bucket != 5 && bucket != 7;
}

void reject_unsupported_characters(const std::string& text, const std::string& path) {
  // Inside single-line and literal strings the parser never asks whether a character is
  // whitespace, so those are left alone; a small state machine follows the strings.
  enum class In { code, basic, literal, multi_basic, multi_literal, comment };
  In in = In::code;
  long line = 1, column = 1;
  auto starts = [&](size_t i, const char* lit) {
    return text.compare(i, std::strlen(lit), lit) == 0;
  };
  for (size_t i = 0; i < text.size(); ++i, ++column) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b == '\n') {
      ++line;
      column = 0;
      if (in == In::comment || in == In::basic || in == In::literal) in = In::code;
      continue;
    }
    switch (in) {
      case In::code:
        if (b == '#') {
          in = In::comment;
        } else if (starts(i, "\"\"\"")) {
          in = In::multi_basic;
          i += 2;
          column += 2;
        } else if (starts(i, "'''")) {
          in = In::multi_literal;
          i += 2;
          column += 2;
        } else if (b == '"') {
          in = In::basic;
        } else if (b == '\'') {
          in = In::literal;
        }
        break;
      case In::basic:
        if (b == '\\') {
          ++i;
          ++column;
        } else if (b == '"') {
          in = In::code;
        }
        continue;
      case In::literal:
        if (b == '\'') in = In::code;
        continue;
      case In::multi_basic:
        // Checked like code: a line-ending backslash makes the parser test the following
        // characters for whitespace.
        if (b == '\\') {
          // The escaped character itself is checked too.
          const unsigned char next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
          if (next != 0 && next < 0x80 && next != '\n' && next != '\r') {
            ++i;
            ++column;
          }
        } else if (starts(i, "\"\"\"")) {
          in = In::code;
          i += 2;
          column += 2;
        }
        break;
      case In::multi_literal:
        if (starts(i, "'''")) {
          in = In::code;
          i += 2;
          column += 2;
        }
        continue;
      case In::comment:
        break;
    }
    if (b < 0x80) continue;
    const int len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + static_cast<size_t>(len) > text.size()) continue;
    char32_t c = b & (0x7F >> len);
    for (int k = 1; k < len; ++k)
      c = (c << 6) | (static_cast<unsigned char>(text[i + static_cast<size_t>(k)]) & 0x3F);
    if (toml_parser_cannot_take(c)) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "U+%04X", static_cast<unsigned>(c));
      throw ConfigError(path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                        ": unsupported character " + hex + " outside a string");
    }
    i += static_cast<size_t>(len - 1);
  }
}

}  // namespace

void load_config_toml(const std::string& path, RunConfig& cfg, std::vector<double>* q_list) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw ConfigError(path + ": cannot read the configuration: " + std::strerror(err));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read the configuration");
  const std::string text = ss.str();
  reject_unsupported_characters(text, path);

#if TOML_EXCEPTIONS
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(position(path, e.source().begin) + ": " + std::string(e.description()));
  }
#else
  toml::parse_result result = toml::parse(text, path);
  if (!result) {
    const toml::parse_error& e = result.error();
    throw ConfigError(position(path, e.source().begin) + ": " + std::string(e.description()));
  }
  toml::table root = std::move(result).table();
#endif

  // toml++ keeps keys sorted; report problems in the order a reader of the file meets them.
  std::vector<Entry> entries;
  for (auto&& [k, v] : root) {
    const std::string name(k.str());
    if (v.is_table() && is_section(name)) {
      for (auto&& [k2, v2] : *v.as_table())
        entries.push_back({name, std::string(k2.str()), &v2, key_position(k2, v2), false});
    } else {
      entries.push_back({"", name, &v, key_position(k, v), v.is_table()});
    }
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
  });

  std::map<std::string, std::string> first_seen;  // canonical key -> where
  std::string misplaced;                          // the first key in a wrong table
  for (const Entry& e : entries) {
    const std::string where = position(path, e.pos);
    const std::string full = e.section.empty() ? e.key : e.section + "." + e.key;
    if (e.unknown_table)
      throw ConfigError(where + ": unknown table '" + e.key + "' (" + kTablesHint + ")");
    const OptionSpec* spec = find_option(e.key);
    if (!spec && e.section.empty() && is_section(e.key))
      throw ConfigError(where + ": '" + e.key + "' must be a table [" + e.key + "], found " +
                        found_type(*e.value));
    if (!spec) throw ConfigError(where + ": unknown key '" + full + "'" + suggestion(e.key));
    if (const auto it = first_seen.find(spec->key); it != first_seen.end())
      throw ConfigError(where + ": key '" + spec->key + "' given twice (first at " + it->second +
                        ")");
    first_seen[spec->key] = where;
    // Reported after the file's other errors, which say more about what was meant.
    if (!e.section.empty() && e.section != table_of(spec->key) && misplaced.empty())
      misplaced = where + ": key '" + e.key + "' belongs in [" + table_of(spec->key) +
                  "] (or at the top level), not in [" + e.section + "]";
    if (q_list && spec->key == "q" && e.value->is_array()) {
      for (const toml::node& v : *e.value->as_array()) {
        if (!v.is_number())
          throw ConfigError(position(path, v.source().begin) + ": q: expected numbers, found " +
                            found_type(v));
        RunConfig one;
        set_option(one, "q", number_text(v), position(path, v.source().begin));
        q_list->push_back(one.q);
      }
      continue;
    }
    const std::string value = value_text(path, spec->key, *spec, *e.value);
    set_option(cfg, spec->key, value, position(path, e.value->source().begin));
    if (std::find_if(std::begin(kInputPathKeys), std::end(kInputPathKeys), [&](const char* k) {
          return spec->key == k;
        }) != std::end(kInputPathKeys)) {
      const std::string given = spec->get(cfg);
      const std::filesystem::path folder = std::filesystem::path(path).parent_path();
      if (!given.empty() && std::filesystem::path(given).is_relative() && !folder.empty()) {
        spec->set(cfg, (folder / given).lexically_normal().string());
        cfg.given_paths[spec->key] = given;
      } else {
        cfg.given_paths.erase(spec->key);
      }
    }
  }
  if (!misplaced.empty()) throw ConfigError(misplaced);
}

}  // namespace eqpm

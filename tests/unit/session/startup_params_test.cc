// The upstream StartupMessage and the reading of `options`:
//  - split_options is pg_split_opts (odd whitespace, escapes, a trailing backslash dropped);
//  - parse_options is PostgreSQL 15's getopt over the words: bundles (`-ec x=y`, `-e-x=y`),
//    glued and separate arguments, an argument word starting with '-', `--name=value`, the
//    letters that set a setting themselves; what PostgreSQL refuses is refused (22023): a
//    trailing `-c`, unknown letters, words that are not switches, `--name value`;
//  - it agrees with an independent glibc-style getopt (below) on every string up to five
//    bytes over an alphabet of the interesting bytes, and on a list of odd inputs;
//  - the settings pgwarden controls are refused with 42501 in every spelling (any case,
//    dashes, escapes, -c, --, bundled, as a bare startup parameter), naming the setting and
//    never its value; pgwarden.preset is taken out into own_settings, the rest re-joined so
//    that the server reads exactly the same switches;
//  - user and database replaced, other parameters kept in order, "_pq_." options collected,
//    replication flagged, the minor version capped at 2.
#include "session/startup_params.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wire/framer.h"
#include "wire/startup.h"

namespace pgwarden::session {
namespace {

using Own = std::map<std::string, std::string>;
using Params = std::vector<std::pair<std::string, std::string>>;
using Words = std::vector<std::string>;

// pg_split_opts, written from PostgreSQL's postinit.c: the reference for what the server will
// see. A backslash makes the next byte literal; one at the very end is dropped.
Words pg_split_opts(std::string_view s) {
  Words out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    if (i == s.size()) {
      break;
    }
    std::string token;
    bool last_was_escape = false;
    while (i < s.size()) {
      if (std::isspace(static_cast<unsigned char>(s[i])) && !last_was_escape) {
        break;
      }
      if (!last_was_escape && s[i] == '\\') {
        last_was_escape = true;
      } else {
        last_was_escape = false;
        token.push_back(s[i]);
      }
      ++i;
    }
    out.push_back(std::move(token));
  }
  return out;
}

// getopt(argc, argv, "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:") as glibc runs it for
// process_postgres_switches: argv is permuted (a non-switch word is skipped and left over,
// which the server refuses), "--" ends the switches, an unknown letter or a missing argument
// is an error. Written independently of the code under test, in glibc's nextchar style.
struct RefSwitch {
  char letter;
  std::string arg;
  bool operator==(const RefSwitch&) const = default;
};
std::optional<std::vector<RefSwitch>> reference_getopt(const Words& argv) {
  constexpr std::string_view kSpec = "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:";
  std::vector<RefSwitch> out;
  bool leftover = false;
  std::size_t optind = 0;
  std::string_view nextchar;
  for (;;) {
    if (nextchar.empty()) {
      while (optind < argv.size() && (argv[optind].size() < 2 || argv[optind][0] != '-')) {
        leftover = true;  // a non-option, permuted to the end
        ++optind;
      }
      if (optind < argv.size() && argv[optind] == "--") {
        ++optind;
        leftover = leftover || optind < argv.size();
        break;
      }
      if (optind == argv.size()) {
        break;
      }
      nextchar = std::string_view(argv[optind]).substr(1);
      ++optind;
    }
    const char c = nextchar.front();
    nextchar.remove_prefix(1);
    const auto at = kSpec.find(c);
    if (at == std::string_view::npos || c == ':') {
      return std::nullopt;
    }
    if (at + 1 < kSpec.size() && kSpec[at + 1] == ':') {
      if (!nextchar.empty()) {
        out.push_back({c, std::string(nextchar)});
        nextchar = {};
      } else if (optind < argv.size()) {
        out.push_back({c, argv[optind++]});
      } else {
        return std::nullopt;
      }
    } else {
      out.push_back({c, ""});
    }
  }
  if (leftover) {
    return std::nullopt;
  }
  return out;
}

std::vector<RefSwitch> as_ref(const std::vector<OptionSwitch>& switches) {
  std::vector<RefSwitch> out;
  for (const auto& sw : switches) {
    out.push_back({sw.letter, sw.argument});
  }
  return out;
}

// Whether PostgreSQL itself refuses a switch that getopt accepted (ParseLongOption without
// '=', -f/-t with an unknown type), or it is one this code refuses on top (an empty argument:
// only a trailing backslash makes one; an empty -c name).
bool refused_beyond_getopt(const RefSwitch& s) {
  if (s.letter == 'c' || s.letter == '-') {
    const auto eq = s.arg.find('=');
    return eq == std::string::npos || eq == 0;
  }
  if (s.letter == 'f') {
    return s.arg.empty() || std::string_view("siobtnmh").find(s.arg[0]) == std::string_view::npos;
  }
  if (s.letter == 't') {
    return !(s.arg.starts_with("pa") || s.arg.starts_with("pl") || s.arg.starts_with("e"));
  }
  return std::string_view("BCDdhkNprSvW").find(s.letter) != std::string_view::npos && s.arg.empty();
}

// parse_options agrees with the reference: the same switches when it accepts, and it refuses
// only what getopt refuses or what refused_beyond_getopt names. Its output joined again
// parses back to the same switches, and the server splits it into the same words.
void expect_agrees_with_reference(std::string_view options) {
  SCOPED_TRACE(::testing::PrintToString(std::string(options)));
  const auto ours = parse_options(options);
  const auto ref = reference_getopt(pg_split_opts(options));
  if (ours) {
    ASSERT_TRUE(ref.has_value()) << "accepted what PostgreSQL refuses";
    EXPECT_EQ(as_ref(*ours), *ref);
    const std::string joined = join_options(*ours);
    const auto again = parse_options(joined);
    ASSERT_TRUE(again.has_value()) << joined;
    EXPECT_EQ(*again, *ours) << joined;
    EXPECT_EQ(reference_getopt(pg_split_opts(joined)), ref) << joined;
    EXPECT_EQ(split_options(joined), pg_split_opts(joined));
    return;
  }
  EXPECT_EQ(ours.error().sqlstate, kSqlstateInvalidParameterValue);
  if (ref) {
    EXPECT_TRUE(std::ranges::any_of(*ref, refused_beyond_getopt))
        << "refused what PostgreSQL accepts: " << ours.error().message;
  }
}

std::string strip_ok(std::string_view options, Own& own) {
  auto r = strip_own_options(options, own);
  EXPECT_TRUE(r.has_value()) << options << ": " << (r ? "" : r.error().message);
  return r.value_or("<error>");
}

// ------------------------------------------------------------------------ split_options

TEST(SplitOptions, IsPgSplitOpts) {
  for (std::string_view s :
       {"",       " ",           " \t\n\r\f\v ",     "a",      "  a  b  ", "a\tb\nc\rd\fe\vf",
        "a\\ b",  "a\\\\ b",     "a\\\\\\ b",        "\\",     "a \\",     "a\\",
        "\\\\",   "\\a\\b",      "-c\\\tx=y",        "a\\\nb", "\\ ",      " \\  ",
        "x\x1cy", "x\xa0y\x85z", "\xc3\xa9 \xc3\xa9"}) {
    SCOPED_TRACE(::testing::PrintToString(std::string(s)));
    EXPECT_EQ(split_options(s), pg_split_opts(s));
  }
  // A trailing backslash is dropped, so a lone one is an empty word.
  EXPECT_EQ(split_options("a\\"), (Words{"a"}));
  EXPECT_EQ(split_options("a \\"), (Words{"a", ""}));
  EXPECT_EQ(split_options("a\\ b\\\\ c"), (Words{"a b\\", "c"}));
}

// ------------------------------------------------------------------------ parse_options

std::vector<OptionSwitch> parse_ok(std::string_view options) {
  auto r = parse_options(options);
  EXPECT_TRUE(r.has_value()) << options << ": " << (r ? "" : r.error().message);
  return r.value_or(std::vector<OptionSwitch>{});
}

OptionSwitch sw(char letter, std::string argument, std::vector<std::string> settings) {
  return OptionSwitch{letter, std::move(argument), std::move(settings)};
}

TEST(ParseOptions, EverySpellingOfASetting) {
  const std::vector<OptionSwitch> work_mem_c{sw('c', "work_mem=7MB", {"work_mem"})};
  const std::vector<OptionSwitch> work_mem_dash{sw('-', "work_mem=7MB", {"work_mem"})};
  EXPECT_EQ(parse_ok("-c work_mem=7MB"), work_mem_c);
  EXPECT_EQ(parse_ok("-cwork_mem=7MB"), work_mem_c);
  EXPECT_EQ(parse_ok("--work_mem=7MB"), work_mem_dash);
  EXPECT_EQ(parse_ok("  -c\t\n work_mem=7MB \r"), work_mem_c);
  // pg_split_opts drops backslashes before ordinary bytes too.
  EXPECT_EQ(parse_ok("\\-\\c w\\ork_mem=7MB"), work_mem_c);
  // ParseLongOption reads '-' as '_' and the lookup folds case.
  EXPECT_EQ(parse_ok("--Work-Mem=7MB"), (std::vector{sw('-', "Work-Mem=7MB", {"work_mem"})}));
  EXPECT_EQ(parse_ok("-c WORK-mem=7MB"), (std::vector{sw('c', "WORK-mem=7MB", {"work_mem"})}));
  // The value runs to the end of the word: "a=b=c" sets a to "b=c".
  EXPECT_EQ(parse_ok("-c a.b=c=d"), (std::vector{sw('c', "a.b=c=d", {"a.b"})}));
  // "-c" takes the next word whatever it is, even one that looks like a switch.
  EXPECT_EQ(parse_ok("-c -x=y"), (std::vector{sw('c', "-x=y", {"_x"})}));
  EXPECT_EQ(parse_ok("-c --x=y"), (std::vector{sw('c', "--x=y", {"__x"})}));
}

TEST(ParseOptions, Bundles) {
  const auto e = sw('e', "", {"datestyle"});
  const auto c = sw('c', "x.y=z", {"x.y"});
  EXPECT_EQ(parse_ok("-ec x.y=z"), (std::vector{e, c}));
  EXPECT_EQ(parse_ok("-ecx.y=z"), (std::vector{e, c}));
  EXPECT_EQ(parse_ok("-e -c x.y=z"), (std::vector{e, c}));
  EXPECT_EQ(parse_ok("-e-x.y=z"), (std::vector{e, sw('-', "x.y=z", {"x.y"})}));
  EXPECT_EQ(parse_ok("-e- x.y=z"), (std::vector{e, sw('-', "x.y=z", {"x.y"})}));
  EXPECT_EQ(parse_ok("-Fes"),
            (std::vector{sw('F', "", {"fsync"}), e, sw('s', "", {"log_statement_stats"})}));
  // A letter with an argument ends the bundle: the rest of the word is its argument.
  EXPECT_EQ(parse_ok("-S4MBe"), (std::vector{sw('S', "4MBe", {"work_mem"})}));
  EXPECT_EQ(parse_ok("-eS 4MB"), (std::vector{e, sw('S', "4MB", {"work_mem"})}));
  // "-ec-c x=y" is -e, then -c with the argument "-c" (no '='): refused, as the server does.
  EXPECT_FALSE(parse_options("-ec-c x=y").has_value());
  EXPECT_EQ(parse_ok("-ec-c=y"), (std::vector{e, sw('c', "-c=y", {"_c"})}));
}

TEST(ParseOptions, LettersThatSetSettings) {
  struct Case {
    std::string_view options;
    std::vector<std::string> settings;
  };
  for (const Case& c : std::vector<Case>{
           {"-B 100", {"shared_buffers"}},
           {"-d 0", {"log_min_messages"}},
           {"-d1", {"log_min_messages"}},
           {"-d 2", {"log_min_messages", "log_statement"}},
           {"-d5",
            {"log_min_messages", "log_statement", "debug_print_parse", "debug_print_plan",
             "debug_print_rewritten"}},
           {"-d x", {"log_min_messages"}},
           {"-d 99999999999999999999", {"log_min_messages"}},  // (int) LONG_MAX is -1
           {"-d 4294967299", {"log_min_messages", "log_statement", "debug_print_parse"}},  // 3
           {"-e", {"datestyle"}},
           {"-F", {"fsync"}},
           {"-fs", {"enable_seqscan"}},
           {"-f hashjoin", {"enable_hashjoin"}},
           {"-h x", {"listen_addresses"}},
           {"-i", {"listen_addresses"}},
           {"-k /tmp", {"unix_socket_directories"}},
           {"-l", {"ssl"}},
           {"-N 5", {"max_connections"}},
           {"-O", {"allow_system_table_mods"}},
           {"-P", {"ignore_system_indexes"}},
           {"-p 5", {"port"}},
           {"-S 1MB", {"work_mem"}},
           {"-s", {"log_statement_stats"}},
           {"-t pa", {"log_parser_stats"}},
           {"-tplanner", {"log_planner_stats"}},
           {"-t e", {"log_executor_stats"}},
           {"-W 1", {"post_auth_delay"}},
           // Only for a standalone backend, or ignored.
           {"-b", {}},
           {"-C x", {}},
           {"-D /d", {}},
           {"-E", {}},
           {"-j", {}},
           {"-n", {}},
           {"-r f", {}},
           {"-T", {}},
           {"-v 3", {}}}) {
    SCOPED_TRACE(c.options);
    auto r = parse_ok(c.options);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].settings, c.settings);
  }
}

TEST(ParseOptions, EndOfSwitches) {
  // getopt stops at "--"; nothing may follow it (the server refuses a leftover argument).
  EXPECT_TRUE(parse_ok("--").empty());
  EXPECT_EQ(parse_ok("-e --"), (std::vector{sw('e', "", {"datestyle"})}));
  EXPECT_FALSE(parse_options("-- -c role=x").has_value());
  EXPECT_FALSE(parse_options("-- x").has_value());
}

TEST(ParseOptions, RefusesWhatPostgresRefuses) {
  for (std::string_view bad : {"-c",         "-c geqo=off -c",
                               "  -c  ",     "-ec",
                               "-e-",        "-e -",
                               "-B",         "-x",
                               "-ex",        "-:",
                               "-c:",        "-\xff",
                               "geqo=off",   "-e foo",
                               "-",          "- -e",
                               "-c geqo",    "--geqo",
                               "--geqo off", "-c =x",
                               "--=x",       "-f",
                               "-f x",       "-f \\",
                               "-t p",       "-t x",
                               "-d \\",      "-C \\",
                               "-c \\",      "-- -e"}) {
    SCOPED_TRACE(::testing::PrintToString(std::string(bad)));
    auto r = parse_options(bad);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().sqlstate, kSqlstateInvalidParameterValue);
    EXPECT_TRUE(r.error().message.starts_with("invalid startup parameters: options: "))
        << r.error().message;
  }
}

TEST(ParseOptions, ErrorsDoNotEchoValues) {
  for (std::string_view bad : {"-c pgwarden.token-s3cr3t", "--s3cr3t", "s3cr3t", "-c a=1 s3cr3t",
                               "-f zs3cr3t", "-t s3cr3t", "-- s3cr3t", "-c=s3cr3t"}) {
    auto r = parse_options(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().message.find("s3cr3t"), std::string::npos) << r.error().message;
  }
}

TEST(ParseOptions, AgreesWithGetoptOnOddInputs) {
  for (std::string_view s : {"",
                             "   ",
                             "-c a=b",
                             "-ca=b",
                             "--a=b",
                             "-ec a=b",
                             "-e-a=b",
                             "-e- a=b",
                             "-c -c",
                             "-c -c=x",
                             "-c --",
                             "--",
                             "-- --",
                             "-e --",
                             "-c a=b --",
                             "-ecc",
                             "-ecc=d",
                             "-ec\\ a=b",
                             "\\-ec a=b",
                             "-\\e\\c a=b",
                             "-e\\ -c a=b",
                             "-c a=b\\",
                             "-c a=b \\",
                             "-c a=\\ b\\\\",
                             "-c\ta=b\n-Fe\v-S\f1MB\r-d3",
                             "-B100 -S 1MB -W0 -d 2 -f s -t pa -C x -D y -r z -v 3",
                             "-c a=\xc3\xa9",
                             "-c a=\x1f\x7f\x01",
                             "-c a=b\xa0-c role=x",
                             "-TnjEb",
                             "-e\xff",
                             "--a=b=c -c x.y=",
                             "-c \\ x=y",
                             "-c x\\=y"}) {
    expect_agrees_with_reference(s);
  }
}

TEST(ParseOptions, AgreesWithGetoptOnEveryShortString) {
  // Every string of up to five bytes over the bytes that matter to the splitter and getopt.
  constexpr std::string_view kAlphabet = "-ce= \\BF";
  std::string s;
  std::function<void(std::size_t)> walk = [&](std::size_t left) {
    expect_agrees_with_reference(s);
    if (left == 0 || ::testing::Test::HasFatalFailure()) {
      return;
    }
    for (char c : kAlphabet) {
      s.push_back(c);
      walk(left - 1);
      s.pop_back();
    }
  };
  walk(5);
}

// ------------------------------------------------------------------------ join_options

TEST(JoinOptions, CanonicalAndEscaped) {
  EXPECT_EQ(join_options({}), "");
  EXPECT_EQ(join_options(parse_ok("-ec x.y=z -Fcw=1 --a-b=c -S1MB -fs")),
            "-e -c x.y=z -F -c w=1 --a-b=c -S1MB -fs");
  // Whitespace, backslashes, control bytes and every byte >= 0x80 are escaped: literal in
  // any server locale.
  EXPECT_EQ(join_options({sw('c', "search_path=a b\\c\td", {"search_path"})}),
            "-c search_path=a\\ b\\\\c\\\td");
  EXPECT_EQ(join_options({sw('c', "application_name=\xc3\xa9\x1c\x7f", {"application_name"})}),
            "-c application_name=\\\xc3\\\xa9\\\x1c\\\x7f");
  EXPECT_EQ(pg_split_opts(join_options({sw('-', "a=\\ \\", {"a"})})), (Words{"--a=\\ \\"}));
}

// ------------------------------------------------------------------------ strip_own_options

TEST(StripOwnOptions, NothingToStrip) {
  Own own;
  EXPECT_EQ(strip_ok("", own), "");
  EXPECT_EQ(strip_ok("   \t ", own), "");
  EXPECT_EQ(strip_ok("--", own), "");
  EXPECT_EQ(strip_ok("-c geqo=off", own), "-c geqo=off");
  EXPECT_EQ(strip_ok("-c geqo=off --work_mem=64MB -cstatement_timeout=5s", own),
            "-c geqo=off --work_mem=64MB -c statement_timeout=5s");
  EXPECT_TRUE(own.empty());
}

TEST(StripOwnOptions, PresetInEachSpelling) {
  struct Case {
    std::string_view options;
    std::string_view rest;
    std::string_view value;
  };
  for (const Case& c :
       {Case{"-c pgwarden.preset=readonly", "", "readonly"},
        Case{"-cpgwarden.preset=readonly", "", "readonly"},
        Case{"--pgwarden.preset=readonly", "", "readonly"},
        Case{"-c PGWARDEN.Preset=ReadOnly", "", "ReadOnly"},
        Case{"-ec pgwarden.preset=admin", "-e", "admin"},
        Case{"-ecpgwarden.preset=admin", "-e", "admin"},
        Case{"-e-pgwarden.preset=admin", "-e", "admin"},
        Case{"-Fe -c pgwarden.preset=x", "-F -e", "x"}, Case{"-c pgwarden.preset=", "", ""},
        Case{"-c pgwarden.preset=a=b", "", "a=b"},
        Case{"-c pgwarden.preset=with\\ space", "", "with space"},
        Case{"-c\\ pgwarden.preset=x", "", ""}}) {
    SCOPED_TRACE(c.options);
    Own own;
    auto r = strip_own_options(c.options, own);
    if (c.options == "-c\\ pgwarden.preset=x") {
      // One word "-c pgwarden.preset=x": -c with argument " pgwarden.preset=x", the setting
      // " pgwarden.preset" (leading space), which the server does not know: forwarded.
      ASSERT_TRUE(r.has_value());
      EXPECT_EQ(*r, "-c \\ pgwarden.preset=x");
      EXPECT_TRUE(own.empty());
      continue;
    }
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(*r, c.rest);
    EXPECT_EQ(own, (Own{{"pgwarden.preset", std::string(c.value)}}));
  }
}

TEST(StripOwnOptions, KeepsOtherSwitchesInOrder) {
  Own own;
  auto out = strip_ok(
      "-c geqo=off -c pgwarden.preset=readonly --work_mem=64MB -cpgwarden.preset=x "
      "-c statement_timeout=5s -ecjit=off",
      own);
  EXPECT_EQ(out, "-c geqo=off --work_mem=64MB -c statement_timeout=5s -e -c jit=off");
  EXPECT_EQ(own, (Own{{"pgwarden.preset", "x"}}));  // the last one
}

TEST(StripOwnOptions, PreservesEscaping) {
  Own own;
  // search_path "a b": the escaped space must survive, or the server sees two arguments.
  auto out = strip_ok("-c search_path=a\\ b -c pgwarden.preset=readonly", own);
  EXPECT_EQ(out, "-c search_path=a\\ b");
  EXPECT_EQ(pg_split_opts(out), (Words{"-c", "search_path=a b"}));
  // A literal backslash and a tab are escaped again.
  out = strip_ok("-c application_name=x\\\\y\\\tz", own);
  EXPECT_EQ(pg_split_opts(out), (Words{"-c", "application_name=x\\y\tz"}));
  // Any whitespace separates; the result uses single spaces.
  EXPECT_EQ(strip_ok("  -c\tgeqo=off \n\r -c  jit=off ", own), "-c geqo=off -c jit=off");
  // A trailing backslash is dropped by the server, and so it is here.
  out = strip_ok("-c application_name=x\\", own);
  EXPECT_EQ(pg_split_opts(out), (Words{"-c", "application_name=x"}));
}

TEST(StripOwnOptions, ServerReadsTheSameSwitchesLessThePreset) {
  // Whatever the spelling, the server's getopt reads exactly the client's switches without
  // the preset, and stripping again changes nothing.
  for (std::string_view options :
       {std::string_view{"-c a.x=1\\ 2\\\\ -c pgwarden.preset=1 --b.y=\\ "},
        std::string_view{"--pgwarden.preset=1 -c\\ x=y"},
        std::string_view{"\\-c pgwarden.preset=y"},
        std::string_view{"-c search_path=\"$user\",\\ public -cpgwarden.preset=readonly"},
        std::string_view{"-ec pgwarden.preset=r -Fe-pgwarden.preset=s -S 1MB -eS2MB"},
        std::string_view{"-c a.b=\xc3\xa9\xa0-c -c x.y=1"}}) {
    SCOPED_TRACE(options);
    Own own;
    auto out = strip_ok(options, own);
    auto client = reference_getopt(pg_split_opts(options));
    ASSERT_TRUE(client.has_value());
    std::erase_if(*client, [](const RefSwitch& s) {
      return (s.letter == 'c' || s.letter == '-') && s.arg.starts_with("pgwarden.preset=");
    });
    EXPECT_EQ(reference_getopt(pg_split_opts(out)), client) << out;
    Own again;
    EXPECT_EQ(strip_ok(out, again), out);
    EXPECT_TRUE(again.empty());
  }
}

// Every spelling of `name` (canonical) that the server reads as that setting.
std::vector<std::string> option_spellings(const std::string& name) {
  std::string upper = name;
  std::ranges::transform(upper, upper.begin(), [](unsigned char c) { return std::toupper(c); });
  std::string dashed = name;
  std::ranges::replace(dashed, '_', '-');
  std::string escaped;  // a backslash before every byte: pg_split_opts drops them all
  for (char c : name) {
    escaped += '\\';
    escaped += c;
  }
  return {"-c " + name + "=on",
          "-c" + name + "=on",
          "--" + name + "=on",
          "-c " + upper + "=on",
          "--" + dashed + "=on",
          "-c " + dashed + "=on",
          "-ec " + name + "=on",
          "-ec" + name + "=on",
          "-e-" + name + "=on",
          "-e- " + name + "=on",
          "-e -c " + name + "=on",
          "-Fe\t-c\n" + name + "=on",
          "-c geqo=off -c " + name + "=on",
          "-c " + escaped + "=on",
          "\\-\\c " + name + "=on",
          "-c pgwarden.preset=readonly -c " + name + "=on",
          "-c " + name + "=",
          "-c " + name + "=on -c x"};  // the setting comes before the malformed switch
}

TEST(StripOwnOptions, ControlledSettingsAreRefusedInEverySpelling) {
  std::vector<std::string> names(kControlledSettings.begin(), kControlledSettings.end());
  names.emplace_back("pgwarden.identity");
  names.emplace_back("pgwarden.groups");
  names.emplace_back("pgwarden.method");
  names.emplace_back("pgwarden.x");
  for (const auto& name : names) {
    for (const auto& options : option_spellings(name)) {
      SCOPED_TRACE(options);
      Own own;
      auto r = strip_own_options(options, own);
      ASSERT_FALSE(r.has_value());
      EXPECT_EQ(r.error().sqlstate, kSqlstateInsufficientPrivilege);
      EXPECT_EQ(r.error().message, "permission denied to set parameter \"" + name + "\"");
    }
  }
  // Not the value, whatever it is.
  Own own;
  auto r = strip_own_options("-c role=s3cr3t", own);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.find("s3cr3t"), std::string::npos);
  // A malformed switch before the setting is the error the server would give first.
  r = strip_own_options("-c x -c role=a", own);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().sqlstate, kSqlstateInvalidParameterValue);
  // getopt reads on past a word that is not a switch (the server applies the setting, then
  // refuses the word), but not past "--".
  r = strip_own_options("x -c role=a", own);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().sqlstate, kSqlstateInsufficientPrivilege);
  r = strip_own_options("-- -c role=a", own);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().sqlstate, kSqlstateInvalidParameterValue);
}

TEST(StripOwnOptions, SimilarNamesAreNotControlled) {
  Own own;
  for (std::string_view ok :
       {"-c roles=x", "-c xrole=x", "-c default_transaction_read_only_x=1",
        "-c transaction_isolation=serializable", "-c pgwarden_preset=x", "-c pgwardenx.y=1",
        "-c \\ role=x", "-c role\\ =x", "-c default_transaction_deferrable=on"}) {
    SCOPED_TRACE(ok);
    EXPECT_TRUE(strip_own_options(ok, own).has_value());
  }
  EXPECT_TRUE(own.empty());
}

TEST(CanonicalSettingName, FoldsAsciiCaseAndDashes) {
  EXPECT_EQ(canonical_setting_name("Default-Transaction_READ-only"),
            "default_transaction_read_only");
  EXPECT_EQ(canonical_setting_name("\xc3\x89x"), "\xc3\x89x");  // only ASCII folds
  EXPECT_TRUE(is_controlled_setting("role"));
  EXPECT_TRUE(is_controlled_setting("pgwarden."));
  EXPECT_TRUE(is_controlled_setting("pgwarden.identity"));
  EXPECT_FALSE(is_controlled_setting("pgwarden.preset"));
  EXPECT_FALSE(is_controlled_setting("Role"));  // callers pass canonical names
  EXPECT_FALSE(is_controlled_setting("work_mem"));
}

// ------------------------------------------------------------------------ build_upstream_startup

wire::StartupMessage startup(std::uint16_t minor,
                             std::vector<std::pair<std::string_view, std::string_view>> params) {
  wire::StartupMessage m;
  m.major = 3;
  m.minor = minor;
  for (auto [n, v] : params) {
    m.parameters.push_back({n, v});
  }
  return m;
}

TEST(BuildUpstreamStartup, ReplacesUserAndDatabaseAndKeepsOrder) {
  auto client = startup(0, {{"application_name", "psql"},
                            {"user", "alice@example.com"},
                            {"client_encoding", "UTF8"},
                            {"database", "clientdb"},
                            {"DateStyle", "ISO, MDY"},
                            {"TimeZone", "Europe/Paris"},
                            {"options", "-c geqo=off"}});
  auto up = build_upstream_startup(client, "app", "appdb");
  ASSERT_TRUE(up.has_value()) << up.error().message;
  EXPECT_EQ(up->parameters, (Params{{"user", "app"},
                                    {"database", "appdb"},
                                    {"application_name", "psql"},
                                    {"client_encoding", "UTF8"},
                                    {"DateStyle", "ISO, MDY"},
                                    {"TimeZone", "Europe/Paris"},
                                    {"options", "-c geqo=off"}}));
  EXPECT_EQ(up->minor, 0);
  EXPECT_FALSE(up->replication);
  EXPECT_TRUE(up->unrecognized_options.empty());
  EXPECT_TRUE(up->own_settings.empty());
}

TEST(BuildUpstreamStartup, UserAndDatabaseAreSetEvenIfTheClientSentNone) {
  auto up = build_upstream_startup(startup(0, {}), "app", "appdb");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->parameters, (Params{{"user", "app"}, {"database", "appdb"}}));
}

TEST(BuildUpstreamStartup, PresetIsTakenOut) {
  auto client = startup(0, {{"user", "alice"},
                            {"PGWARDEN.Preset", "readonly"},
                            {"options", "-c search_path=a\\ b -ec pgwarden.preset=admin"},
                            {"application_name", "app"}});
  auto up = build_upstream_startup(client, "u", "d");
  ASSERT_TRUE(up.has_value()) << up.error().message;
  EXPECT_EQ(up->parameters, (Params{{"user", "u"},
                                    {"database", "d"},
                                    {"options", "-c search_path=a\\ b -e"},
                                    {"application_name", "app"}}));
  EXPECT_EQ(up->own_settings, (Own{{"pgwarden.preset", "admin"}}));
}

TEST(BuildUpstreamStartup, OptionsWithOnlyThePresetAreDropped) {
  auto client = startup(0, {{"options", " -c pgwarden.preset=readonly "}});
  auto up = build_upstream_startup(client, "u", "d");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->parameters, (Params{{"user", "u"}, {"database", "d"}}));
  EXPECT_EQ(up->own_settings, (Own{{"pgwarden.preset", "readonly"}}));
}

TEST(BuildUpstreamStartup, ControlledSettingsAsBareParametersAreRefused) {
  for (auto [name, canonical] : std::vector<std::pair<std::string_view, std::string_view>>{
           {"default_transaction_read_only", "default_transaction_read_only"},
           {"DEFAULT_TRANSACTION_READ_ONLY", "default_transaction_read_only"},
           {"default-transaction-read-only", "default_transaction_read_only"},
           {"transaction_read_only", "transaction_read_only"},
           {"Transaction_Read_Only", "transaction_read_only"},
           {"role", "role"},
           {"ROLE", "role"},
           {"session_authorization", "session_authorization"},
           {"Session-Authorization", "session_authorization"},
           {"pgwarden.identity", "pgwarden.identity"},
           {"PGWARDEN.Groups", "pgwarden.groups"},
           {"pgwarden.", "pgwarden."},
           {"PGWARDEN.", "pgwarden."}}) {
    SCOPED_TRACE(name);
    auto up = build_upstream_startup(
        startup(0, {{"user", "alice"}, {name, "off"}, {"application_name", "x"}}), "u", "d");
    ASSERT_FALSE(up.has_value());
    EXPECT_EQ(up.error().sqlstate, kSqlstateInsufficientPrivilege);
    EXPECT_EQ(up.error().message,
              "permission denied to set parameter \"" + std::string(canonical) + "\"");
  }
}

TEST(BuildUpstreamStartup, ControlledSettingsInOptionsAreRefused) {
  for (std::string_view options :
       {"-c default_transaction_read_only=off", "--default-transaction-read-only=off",
        "-ec transaction_read_only=off", "-e-role=postgres", "-c SESSION_AUTHORIZATION=postgres",
        "-ec pgwarden.identity=bob"}) {
    SCOPED_TRACE(options);
    auto up = build_upstream_startup(startup(0, {{"options", options}}), "u", "d");
    ASSERT_FALSE(up.has_value());
    EXPECT_EQ(up.error().sqlstate, kSqlstateInsufficientPrivilege);
  }
}

TEST(BuildUpstreamStartup, ProtocolOptionsAreCollectedNotForwarded) {
  auto client = startup(2, {{"_pq_.compression", "zstd"},
                            {"user", "alice"},
                            {"_pq_.other", "1"},
                            {"application_name", "x"}});
  auto up = build_upstream_startup(client, "u", "d");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->unrecognized_options, (std::vector<std::string>{"_pq_.compression", "_pq_.other"}));
  EXPECT_EQ(up->parameters, (Params{{"user", "u"}, {"database", "d"}, {"application_name", "x"}}));
}

TEST(BuildUpstreamStartup, ReplicationIsFlaggedNotForwarded) {
  for (std::string_view value : {"true", "database", "on", "1"}) {
    auto up = build_upstream_startup(startup(0, {{"replication", value}}), "u", "d");
    ASSERT_TRUE(up.has_value());
    // Any value: the session decides, and nothing of it reaches the server unchecked.
    EXPECT_TRUE(up->replication) << value;
    EXPECT_EQ(up->parameters, (Params{{"user", "u"}, {"database", "d"}}));
  }
}

TEST(BuildUpstreamStartup, MinorVersionCappedAtTwo) {
  for (auto [asked, expected] : {std::pair<std::uint16_t, std::uint16_t>{0, 0},
                                 {1, 1},
                                 {2, 2},
                                 {3, 2},
                                 {100, 2},
                                 {0xffff, 2}}) {
    auto up = build_upstream_startup(startup(asked, {}), "u", "d");
    ASSERT_TRUE(up.has_value());
    EXPECT_EQ(up->minor, expected) << asked;
  }
}

TEST(BuildUpstreamStartup, MalformedOptionsAre22023) {
  for (std::string_view options :
       {"-c geqo=off -c", "-c pgwarden.preset", "-x", "geqo=off", "--geqo off"}) {
    auto up = build_upstream_startup(startup(0, {{"options", options}}), "u", "d");
    ASSERT_FALSE(up.has_value()) << options;
    EXPECT_EQ(up.error().sqlstate, kSqlstateInvalidParameterValue);
  }
}

TEST(BuildUpstreamStartup, ResultEncodesAndDecodesAsAStartupMessage) {
  auto client = startup(2, {{"user", "alice"},
                            {"options", "-c search_path=a\\ b\\\\c -c pgwarden.preset=readonly"},
                            {"application_name", "psql"},
                            {"_pq_.x", "y"}});
  auto up = build_upstream_startup(client, "app", "appdb");
  ASSERT_TRUE(up.has_value());
  wire::StartupMessage m;
  m.minor = up->minor;
  for (const auto& [n, v] : up->parameters) {
    m.parameters.push_back({n, v});
  }
  wire::ByteVector bytes;
  wire::encode(m, bytes);
  auto framed = wire::frame_startup(bytes);
  ASSERT_TRUE(framed && framed->frame);
  auto decoded = wire::parse_startup_message(framed->frame->body);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->minor, 2);
  EXPECT_EQ(decoded->find("user"), "app");
  EXPECT_EQ(decoded->find("database"), "appdb");
  EXPECT_FALSE(decoded->find("_pq_.x"));
  EXPECT_FALSE(decoded->has_protocol_options());
  ASSERT_TRUE(decoded->find("options"));
  EXPECT_EQ(pg_split_opts(*decoded->find("options")), (Words{"-c", "search_path=a b\\c"}));
}

}  // namespace
}  // namespace pgwarden::session

using System.Net;
using System.Runtime.CompilerServices;
using Bastion.Configuration;

namespace Bastion.Policy;

/// <summary>
/// The `lists:` section, loaded once per configuration. A list's entries are read from its file at load
/// (one entry a line, '#' comments, hosts-file lines such as `0.0.0.0 ads.example.com` accepted), and
/// compiled on first use into the form a condition needs (CIDR set, domain set), cached per form. `@private`
/// is built in (<see cref="TargetAddress.PrivateRanges"/>) unless the configuration defines its own.
/// </summary>
public sealed class NamedLists
{
    // Inline lists as written; file lists as their text, split into strings only when a use needs them
    // (a million-line domain list goes straight from the text into a DomainSet).
    readonly Dictionary<string, string[]> _entries = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> _texts = new(StringComparer.Ordinal);
    readonly Dictionary<string, CidrSet> _cidrs = new(StringComparer.Ordinal);
    readonly Dictionary<string, (DomainSet, CidrSet?)> _hosts = new(StringComparer.Ordinal);
    readonly Dictionary<string, List<string>> _badCidrs = new(StringComparer.Ordinal);

    static readonly HashSet<string> HostsFileNoise = new(StringComparer.OrdinalIgnoreCase)
    {
        "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
        "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0",
    };
    static readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> Noise = HostsFileNoise.GetAlternateLookup<ReadOnlySpan<char>>();

    public static NamedLists Load(BastionConfig config, List<ConfigError> errors)
    {
        var lists = new NamedLists();
        if (config.Lists.TryGetValue(TargetAddress.PrivateList, out var own))
            errors.Add(new ConfigError(own.Pos, $"list '{TargetAddress.PrivateList}' replaces the built-in @{TargetAddress.PrivateList} (every non-public address)", IsWarning: true));
        else lists._entries[TargetAddress.PrivateList] = TargetAddress.PrivateRanges;
        foreach (var (name, l) in config.Lists)
        {
            if (l.File is null)
            {
                lists._entries[name] = [.. l.Items];
                CheckEntries(name, null, l.Items, l.Pos, errors);
                continue;
            }
            var path = config.Resolve(l.File);
            try
            {
                var text = File.ReadAllText(path);
                lists._texts[name] = text;
                CheckEntries(name, path, text, l.Pos, errors);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add(new ConfigError(l.Pos, $"list '{name}': cannot read {path}: {e.Message}"));
                lists._entries[name] = [];
            }
        }
        return lists;
    }

    /// <summary>
    /// Every entry must be a host name (`*.x`, `.x`), an IP or CIDR, or a mail address (`a@x`, `*@x`): checked
    /// whether or not a rule uses the list yet, so that `[10.0.0.0/33]` is an error the day it is written.
    /// </summary>
    static void CheckEntries(string name, string? file, IEnumerable<string> items, SourcePos pos, List<ConfigError> errors)
    {
        var bad = items.Where(i => ValueChecks.Classify(i) == ValueChecks.EntryKind.Bad).ToList();
        if (bad.Count > 0) errors.Add(new ConfigError(pos, BadEntries(name, file, bad.Count, bad)));
    }

    static void CheckEntries(string name, string path, string text, SourcePos pos, List<ConfigError> errors)
    {
        var bad = new List<string>();
        int count = 0;
        var en = new EntryEnumerator(text);
        while (en.MoveNext())
        {
            if (ValueChecks.Classify(en.Current) != ValueChecks.EntryKind.Bad) continue;
            if (++count <= 3) bad.Add(en.Current.ToString());
        }
        if (count > 0) errors.Add(new ConfigError(pos, BadEntries(name, path, count, bad)));
    }

    static string BadEntries(string name, string? file, int count, List<string> examples) =>
        $"list '{name}'{(file is null ? "" : $" ({file})")}: {count} {(count == 1 ? "entry is" : "entries are")} neither a host name, " +
        $"an IP/CIDR nor a mail address: {string.Join(", ", examples.Take(3).Select(b => $"'{b}'"))}{(count > 3 ? ", ..." : "")}";

    public static string[] ReadListFile(string path) => Split(File.ReadAllText(path));

    static string[] Split(string text)
    {
        var result = new List<string>();
        var en = new EntryEnumerator(text);
        while (en.MoveNext()) result.Add(en.Current.ToString());
        return [.. result];
    }

    /// <summary>
    /// The entries of a list file: one a line, '#' comments, and hosts-file lines (`0.0.0.0 a.example b.example`)
    /// read as their names, without the usual localhost noise.
    /// </summary>
    public ref struct EntryEnumerator(ReadOnlySpan<char> text)
    {
        ReadOnlySpan<char> _rest = text;
        ReadOnlySpan<char> _names; // the rest of a hosts-file line
        public ReadOnlySpan<char> Current { get; private set; }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public bool MoveNext()
        {
            while (true)
            {
                if (!_names.IsEmpty)
                {
                    int ws = _names.IndexOfAny(' ', '\t');
                    var name = ws < 0 ? _names : _names[..ws];
                    _names = ws < 0 ? default : _names[(ws + 1)..].TrimStart();
                    if (!name.IsEmpty && !Noise.Contains(name)) { Current = name; return true; }
                    continue;
                }
                if (_rest.IsEmpty) return false;
                int nl = _rest.IndexOf('\n');
                var line = nl < 0 ? _rest : _rest[..nl];
                _rest = nl < 0 ? default : _rest[(nl + 1)..];
                int hash = line.IndexOf('#');
                if (hash >= 0) line = line[..hash];
                line = line.Trim();
                if (line.IsEmpty) continue;
                int sp = line.IndexOfAny(' ', '\t');
                if (sp >= 0 && MaybeAddress(line[..sp]) && IPAddress.TryParse(line[..sp], out _))
                {
                    _names = line[sp..].TrimStart();
                    continue;
                }
                Current = line;
                return true;
            }
        }
    }

    /// <summary>Every list's name (for "did you mean").</summary>
    public IEnumerable<string> Names => _entries.Keys.Concat(_texts.Keys).Distinct();

    public bool Has(string name) => _entries.ContainsKey(name) || _texts.ContainsKey(name);

    public IReadOnlyList<string> Entries(string name)
    {
        lock (_entries)
        {
            if (!_entries.TryGetValue(name, out var e)) _entries[name] = e = Split(_texts[name]);
            return e;
        }
    }

    public CidrSet Cidrs(string name, out List<string> bad)
    {
        var entries = Entries(name);
        lock (_cidrs)
        {
            if (!_cidrs.TryGetValue(name, out var set))
            {
                var b = new List<string>();
                set = CidrSet.Build(entries, b);
                _cidrs[name] = set;
                _badCidrs[name] = b;
            }
            bad = _badCidrs[name];
            return set;
        }
    }

    /// <summary>
    /// A list as hosts: names (each matching itself and its subdomains; `*.x` and `.x` read as `x`) and IPs/CIDRs
    /// for IP-literal targets. Built once per configuration and shared by every rule that names the list.
    /// </summary>
    public (DomainSet Names, CidrSet? Addresses) Hosts(string name)
    {
        lock (_hosts)
        {
            if (!_hosts.TryGetValue(name, out var h))
            {
                var names = new DomainSet();
                var cidrs = new List<string>();
                if (_texts.TryGetValue(name, out var text) && !_entries.ContainsKey(name)) AddHosts(text, names, cidrs);
                else foreach (var e in _entries[name]) AddHost(e, names, cidrs);
                _hosts[name] = h = (names, cidrs.Count > 0 ? CidrSet.Build(cidrs) : null);
            }
            return h;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AddHosts(string text, DomainSet names, List<string> cidrs)
    {
        var en = new EntryEnumerator(text);
        while (en.MoveNext()) AddHost(en.Current, names, cidrs);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AddHost(ReadOnlySpan<char> e, DomainSet names, List<string> cidrs)
    {
        // Only entries that could be an address pay for IP parsing (a big domain list has none).
        if (MaybeAddress(e) && CidrSet.TryParsePrefix(e.ToString(), out _, out _)) cidrs.Add(e.ToString());
        else names.Add(e.StartsWith("*.") ? e[2..] : e);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static bool MaybeAddress(ReadOnlySpan<char> e)
    {
        foreach (var c in e)
            if (!(char.IsAsciiHexDigit(c) || c is '.' or ':' or '/')) return false;
        return !e.IsEmpty;
    }
}

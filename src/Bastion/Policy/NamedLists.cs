using System.Net;
using Bastion.Configuration;

namespace Bastion.Policy;

/// <summary>
/// The `lists:` section, loaded once per configuration. A list's entries are read from its file at load
/// (one entry a line, '#' comments, hosts-file lines such as `0.0.0.0 ads.example.com` accepted), and
/// compiled on first use into the form a condition needs (CIDR set, domain set), cached per form.
/// </summary>
public sealed class NamedLists
{
    readonly Dictionary<string, string[]> _entries = new(StringComparer.Ordinal);
    readonly Dictionary<string, CidrSet> _cidrs = new(StringComparer.Ordinal);
    readonly Dictionary<string, (DomainSet, CidrSet?)> _hosts = new(StringComparer.Ordinal);
    readonly Dictionary<string, List<string>> _badCidrs = new(StringComparer.Ordinal);

    static readonly HashSet<string> HostsFileNoise = new(StringComparer.OrdinalIgnoreCase)
    {
        "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
        "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0",
    };

    public static NamedLists Load(BastionConfig config, List<ConfigError> errors)
    {
        var lists = new NamedLists();
        foreach (var (name, l) in config.Lists)
        {
            if (l.File is null)
            {
                lists._entries[name] = [.. l.Items];
                continue;
            }
            var path = config.Resolve(l.File);
            try { lists._entries[name] = ReadListFile(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add(new ConfigError(l.Pos, $"list '{name}': cannot read {path}: {e.Message}"));
                lists._entries[name] = [];
            }
        }
        return lists;
    }

    public static string[] ReadListFile(string path)
    {
        var result = new List<string>();
        foreach (var raw in File.ReadLines(path))
        {
            var line = raw.AsSpan();
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            line = line.Trim();
            if (line.IsEmpty) continue;
            int ws = line.IndexOfAny(' ', '\t');
            if (ws < 0)
            {
                result.Add(line.ToString());
                continue;
            }
            // Hosts-file line: an address then names.
            var first = line[..ws];
            if (!IPAddress.TryParse(first, out _))
            {
                result.Add(line.ToString());
                continue;
            }
            foreach (var part in line[ws..].ToString().Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
                if (!HostsFileNoise.Contains(part)) result.Add(part);
        }
        return [.. result];
    }

    public bool Has(string name) => _entries.ContainsKey(name);

    public IReadOnlyList<string> Entries(string name) => _entries[name];

    public CidrSet Cidrs(string name, out List<string> bad)
    {
        lock (_cidrs)
        {
            if (!_cidrs.TryGetValue(name, out var set))
            {
                var b = new List<string>();
                set = CidrSet.Build(_entries[name], b);
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
                var names = new List<string>();
                var cidrs = new List<string>();
                foreach (var e in _entries[name])
                {
                    // Only entries that could be an address pay for IP parsing (a big domain list has none).
                    if (MaybeAddress(e) && CidrSet.TryParsePrefix(e, out _, out _)) cidrs.Add(e);
                    else names.Add(e.StartsWith("*.", StringComparison.Ordinal) ? e[2..] : e);
                }
                _hosts[name] = h = (new DomainSet(names), cidrs.Count > 0 ? CidrSet.Build(cidrs) : null);
            }
            return h;
        }
    }

    static bool MaybeAddress(string e)
    {
        foreach (var c in e)
            if (!(char.IsAsciiDigit(c) || c is '.' or ':' or '/' || char.IsAsciiHexDigit(c))) return false;
        return e.Length > 0;
    }
}

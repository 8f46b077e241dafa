using System.Collections.Immutable;
using System.Net;
using Bastion.Configuration;

namespace Bastion.Policy;

/// <summary>Turns policy text into <see cref="CompiledPolicy"/>: every pattern, list and range is prepared here, once.</summary>
public sealed class PolicyCompiler(NamedLists lists, ImmutableDictionary<string, ImmutableArray<string>> groups, List<ConfigError> errors)
{
    public CompiledPolicy Compile(PolicyConfig p)
    {
        var rules = new List<CompiledRule>();
        for (int i = 0; i < p.Rules.Length; i++)
        {
            var r = p.Rules[i];
            var conds = CompileAll(r.Conditions);
            rules.Add(new CompiledRule
            {
                Index = i + 1,
                Verdict = r.Verdict,
                Conditions = conds,
                Name = r.Name ?? $"{p.Name}#{i + 1}",
                Reason = r.Reason,
                IsResponse = conds.Any(c => c.IsResponse),
                Pos = r.Pos,
            });
        }
        return new CompiledPolicy(p.Name, p.Default, [.. rules]);
    }

    Condition[] CompileAll(ImmutableArray<ConditionSpec> specs) =>
        [.. specs.Select(Compile).OfType<Condition>()];

    void Error(SourcePos pos, string msg) => errors.Add(new ConfigError(pos, msg));

    bool ListRef(ValueSpec v, out string name)
    {
        name = v.Text[1..];
        if (!v.Text.StartsWith('@')) return false;
        if (!lists.Has(name)) Error(v.Pos, $"unknown list '@{name}'{Suggest.Hint(name, lists.Names)} (define it under 'lists:')");
        return true;
    }

    static string Text(ConditionSpec s) => s.Values.Length == 1 ? s.Values[0].Text : $"[{string.Join(", ", s.Values.Select(v => v.Text))}]";

    Condition? Compile(ConditionSpec s)
    {
        switch (s.Key)
        {
            case "not":
                return new NotCondition(CompileAll(s.Nested));
            case "source":
                {
                    var entries = new List<string>();
                    foreach (var v in s.Values)
                    {
                        if (ListRef(v, out var name))
                        {
                            if (!lists.Has(name)) continue;
                            var set = lists.Cidrs(name, out var bad);
                            if (bad.Count > 0) Error(v.Pos, $"list '@{name}' used as source has entries that are not IPs or CIDRs: {string.Join(", ", bad.Take(3))}");
                            entries.AddRange(lists.Entries(name));
                        }
                        else if (!CidrSet.TryParsePrefix(v.Text, out _, out _)) Error(v.Pos, $"source: '{v.Text}' is not an IP address or CIDR");
                        else entries.Add(v.Text);
                    }
                    return new SourceCondition(CidrSet.Build(entries), Text(s));
                }
            case "user":
                return new UserCondition(new HashSet<string>(s.Values.Select(v => v.Text), StringComparer.Ordinal), Text(s), "user");
            case "group":
                {
                    var users = new HashSet<string>(StringComparer.Ordinal);
                    foreach (var v in s.Values)
                    {
                        if (groups.TryGetValue(v.Text, out var members)) users.UnionWith(members);
                        else Error(v.Pos, $"unknown group '{v.Text}'{Suggest.Hint(v.Text, groups.Keys)} (define it under identity.groups)");
                    }
                    return new UserCondition(users, Text(s), "group");
                }
            case "host" or "sni":
                return new HostCondition(CompileHosts(s.Values), Text(s), s.Key == "sni");
            case "port":
                {
                    var ranges = new List<(int, int)>();
                    foreach (var v in s.Values)
                    {
                        var parts = v.Text.Split('-');
                        if (parts.Length is 1 or 2 && int.TryParse(parts[0], out var a) && a is >= 1 and <= 65535)
                        {
                            int b = a;
                            if (parts.Length == 2 && (!int.TryParse(parts[1], out b) || b < a || b > 65535))
                            {
                                Error(v.Pos, $"port: '{v.Text}' is not a port range (like 8000-8999)");
                                continue;
                            }
                            ranges.Add((a, b));
                        }
                        else Error(v.Pos, $"port: '{v.Text}' is not a port (1-65535) or range (8000-8999)");
                    }
                    return new PortCondition([.. ranges], Text(s));
                }
            case "upgrade":
                return new UpgradeCondition([.. s.Values.Select(v => v.Text.Trim())]);
            case "method":
                foreach (var v in s.Values)
                    if (ValueChecks.Method(v.Text) is { } problem) errors.Add(new ConfigError(v.Pos, problem.Message, problem.IsWarning));
                return new WordCondition([.. s.Values.Select(v => v.Text.ToUpperInvariant())], "method", a => a.Method);
            case "command":
                return new WordCondition([.. s.Values.Select(v => v.Text.ToUpperInvariant())], "command", a => a.Command);
            case "path":
                return CaseModes(s, "path", a => a.Path, pathAware: true);
            case "url":
                return CaseModes(s, "url", a => a.Url, pathAware: false);
            case "content_type":
                return new ContentTypeCondition([.. s.Values.Select(v => Pattern(v, false, true)).OfType<StringPattern>()]);
            case "header":
                {
                    var hs = new List<(string, StringPattern[])>();
                    foreach (var (name, patterns) in s.HeaderMap)
                    {
                        var ps = patterns.Select(p => Pattern(p, false, true)).OfType<StringPattern>().ToArray();
                        hs.Add((name.Text, ps));
                    }
                    return new HeaderCondition([.. hs]);
                }
            case "mail_from" or "rcpt_to":
                {
                    var addrs = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
                    var domains = new List<string>();
                    foreach (var v in s.Values)
                    {
                        if (ListRef(v, out var name))
                        {
                            if (!lists.Has(name)) continue;
                            foreach (var e in lists.Entries(name)) AddAddress(e, addrs, domains);
                        }
                        else AddAddress(v.Text, addrs, domains);
                    }
                    var m = new AddressMatcher(addrs, new DomainSet(domains));
                    return s.Key == "mail_from" ? new MailFromCondition(m, Text(s)) : new RcptToCondition(m, Text(s));
                }
            case "size":
                {
                    var bounds = new List<(char, long)>();
                    foreach (var v in s.Values)
                    {
                        var t = v.Text.Trim();
                        char op = '=';
                        if (t.StartsWith(">=")) { op = 'g'; t = t[2..]; }
                        else if (t.StartsWith("<=")) { op = 'l'; t = t[2..]; }
                        else if (t.StartsWith('>')) { op = '>'; t = t[1..]; }
                        else if (t.StartsWith('<')) { op = '<'; t = t[1..]; }
                        if (Units.TryParseSize(t, out var n)) bounds.Add((op, n));
                        else Error(v.Pos, $"size: '{v.Text}' is not a size bound (like \"> 10MiB\")");
                    }
                    return new SizeCondition([.. bounds], Text(s));
                }
            case "time":
                {
                    var ws = new List<TimeWindow>();
                    foreach (var v in s.Values)
                    {
                        var w = TimeWindow.Parse(v.Text, out var err);
                        if (w is null) Error(v.Pos, $"time: {err}");
                        else ws.Add(w);
                    }
                    return new TimeCondition([.. ws]);
                }
            default:
                Error(s.Pos, $"unknown condition '{s.Key}'");
                return null;
        }
    }

    static void AddAddress(string e, HashSet<string> addrs, List<string> domains)
    {
        e = e.Trim().Trim('<', '>');
        if (e.StartsWith("*@")) domains.Add(e[2..]);
        else if (e.StartsWith('@')) domains.Add(e[1..]);
        else if (!e.Contains('@')) domains.Add(e);
        else addrs.Add(e);
    }

    StringPattern? Pattern(ValueSpec v, bool pathAware, bool ignoreCase)
    {
        try { return new StringPattern(v.Text, pathAware, ignoreCase); }
        catch (ArgumentException e)
        {
            Error(v.Pos, $"bad pattern '{v.Text}': {e.Message}");
            return null;
        }
    }

    PathCondition CaseModes(ConditionSpec s, string attr, Func<RequestAttributes, string?> get, bool pathAware)
    {
        var sensitive = s.Values.Select(v => Pattern(v, pathAware, false)).OfType<StringPattern>().ToArray();
        // Errors were reported once, by the first compile.
        var insensitive = s.Values.Select(v => SafePattern(v.Text, pathAware, true)).OfType<StringPattern>().ToArray();
        return new PathCondition(sensitive, insensitive, attr, get);
    }

    static StringPattern? SafePattern(string text, bool pathAware, bool ignoreCase)
    {
        try { return new StringPattern(text, pathAware, ignoreCase); }
        catch (ArgumentException) { return null; }
    }

    /// <summary>Host patterns as `host` and `sni` conditions take them (also used by tls_inspection's lists).</summary>
    public HostMatcher CompileHosts(ImmutableArray<ValueSpec> values)
    {
        var exact = new List<string>();
        var parents = new List<string>();
        var listSets = new List<DomainSet>();
        var regexes = new List<StringPattern>();
        var cidrs = new List<string>();
        var cidrSets = new List<CidrSet>();
        foreach (var v in values)
        {
            var t = v.Text.Trim();
            if (ListRef(v, out var name))
            {
                if (!lists.Has(name)) continue;
                var (names, addresses) = lists.Hosts(name);
                listSets.Add(names);
                if (addresses is not null) cidrSets.Add(addresses);
            }
            else if (t.StartsWith('~')) { if (Pattern(v, false, true) is { } p) regexes.Add(p); }
            else if (t.StartsWith("*.", StringComparison.Ordinal) && !Bastion.Policy.Patterns.IsGlob(t[2..]))
            {
                if (Canonical.HostName.TryNormalize(t.AsSpan(2), out var h, out var err)) parents.Add(h);
                else Error(v.Pos, $"host: '{t}' is not '*.' and a host name ({err})");
            }
            else if (t.Contains('/') || t.Contains(':') || IPAddress.TryParse(t.Trim('[', ']'), out _))
            {
                if (CidrSet.TryParsePrefix(t.Trim('[', ']'), out _, out _)) cidrs.Add(t.Trim('[', ']'));
                else Error(v.Pos, $"host: '{t}' is not a host name, IP or CIDR");
            }
            else if (Bastion.Policy.Patterns.IsGlob(t))
            {
                if (GlobHost(v, t) is { } g && Pattern(v with { Text = g }, false, true) is { } p) regexes.Add(p);
            }
            else if (RuleHost(v, t) is { } h) exact.Add(h);
        }
        if (cidrs.Count > 0) cidrSets.Add(CidrSet.Build(cidrs));
        return new HostMatcher(exact, parents, listSets, regexes, cidrSets);
    }

    /// <summary>A host name in a rule, converted as the wire's are (lowercase, no trailing dot, IDN as punycode).</summary>
    string? RuleHost(ValueSpec v, string text)
    {
        if (Canonical.HostName.TryNormalize(text, out var h, out var err)) return h;
        Error(v.Pos, $"host: '{v.Text}' is not a host name ({err})");
        return null;
    }

    /// <summary>A glob converted label by label: wildcard labels as written (lowercased), the others as host names.</summary>
    string? GlobHost(ValueSpec v, string glob)
    {
        if (glob.EndsWith('.')) glob = glob[..^1];
        var labels = glob.Split('.');
        for (int i = 0; i < labels.Length; i++)
        {
            var l = labels[i];
            if (Bastion.Policy.Patterns.IsGlob(l))
            {
                if (l.Any(c => c >= 0x80))
                {
                    Error(v.Pos, $"host: '{v.Text}': a wildcard label cannot hold non-ASCII characters (write it in punycode)");
                    return null;
                }
                labels[i] = l.ToLowerInvariant();
            }
            else if (l.Length > 0 && l.All(char.IsAscii)) labels[i] = l.ToLowerInvariant();
            else if (l.Length > 0 && Canonical.HostName.TryNormalize(l, out var n, out _)) labels[i] = n;
            else
            {
                Error(v.Pos, $"host: '{v.Text}': '{l}' is not a valid label");
                return null;
            }
        }
        return string.Join('.', labels);
    }
}

using System.Net;

namespace Bastion.Policy;

/// <summary>A compiled condition. Evaluation must not allocate: everything is prepared by <see cref="PolicyCompiler"/>.</summary>
public abstract class Condition
{
    /// <summary>The attribute it asks about (`source`, `host`...), for `check` warnings and traces.</summary>
    public abstract string Attribute { get; }
    public abstract bool Matches(RequestAttributes a);
    public abstract string Describe();
    /// <summary>Conditions on the response (content_type, size) make a rule a response rule.</summary>
    public virtual bool IsResponse => false;
    /// <summary>`host` with IPs or CIDRs: rules holding one are asked about every resolved address (SPEC 2.1).</summary>
    public virtual bool JudgesAddresses => false;
}

sealed class SourceCondition(CidrSet set, string text) : Condition
{
    public override string Attribute => "source";
    public override bool Matches(RequestAttributes a) => a.Source is { } ip && set.Contains(ip);
    public override string Describe() => $"source in {text}";
}

sealed class UserCondition(HashSet<string> users, string text, string attribute) : Condition
{
    public override string Attribute => attribute;
    public override bool Matches(RequestAttributes a) => a.User is { } u && users.Contains(u);
    public override string Describe() => $"{attribute} {text}";
}

/// <summary>
/// Hosts: exact names, `*.suffix` (subdomains), `@list` (name and subdomains), `~regex` and globs (on the normalised
/// name), and IPs/CIDRs, which judge an IP-literal target or, after DNS, each address a name resolved to.
/// </summary>
public sealed class HostMatcher
{
    readonly DomainSet? _exact, _parents;
    readonly DomainSet[] _lists;
    readonly StringPattern[] _regexes;
    readonly CidrSet[] _cidrs;

    public HostMatcher(IEnumerable<string> exact, IEnumerable<string> subdomainsOf, IEnumerable<DomainSet> lists,
        IEnumerable<StringPattern> regexes, IEnumerable<CidrSet> cidrs)
    {
        var e = new DomainSet(exact);
        var p = new DomainSet(subdomainsOf);
        _exact = e.Count > 0 ? e : null;
        _parents = p.Count > 0 ? p : null;
        _lists = [.. lists.Where(l => l.Count > 0)];
        _regexes = [.. regexes];
        _cidrs = [.. cidrs.Where(c => c.Count > 0)];
    }

    /// <summary>True when it has IP/CIDR entries: the rules holding it are asked about resolved addresses too.</summary>
    public bool HasAddresses => _cidrs.Length > 0;

    public bool Matches(string host)
    {
        var h = host.AsSpan();
        if (h.Length > 2 && h[0] == '[' && h[^1] == ']') h = h[1..^1];
        // Hosts arrive normalised; a trailing dot left by a caller must not defeat globs and regexes.
        if (h.Length > 1 && h[^1] == '.') h = h[..^1];
        if (_exact is not null && _exact.ContainsExact(h)) return true;
        if (_parents is not null && _parents.MatchesParentOnly(h)) return true;
        foreach (var l in _lists)
            if (l.MatchesSelfOrParent(h)) return true;
        foreach (var r in _regexes)
            if (r.IsMatch(h)) return true;
        if (_cidrs.Length > 0 && IPAddress.TryParse(h, out var ip)) return MatchesAddress(ip);
        return false;
    }

    /// <summary>An address judged as the kernel would connect to it (0.0.0.0 is loopback).</summary>
    public bool MatchesAddress(IPAddress ip)
    {
        ip = TargetAddress.Effective(ip);
        foreach (var c in _cidrs)
            if (c.Contains(ip)) return true;
        return false;
    }
}

sealed class HostCondition(HostMatcher m, string text, bool sni) : Condition
{
    public override string Attribute => sni ? "sni" : "host";
    public override bool JudgesAddresses => !sni && m.HasAddresses;
    public override bool Matches(RequestAttributes a)
    {
        if (sni) return a.Sni is { } s && m.Matches(s);
        // While a resolved address is judged, the host is that address.
        if (a.Address is { } ip) return m.MatchesAddress(ip);
        return a.Host is { } h && m.Matches(h);
    }
    public override string Describe() => $"{Attribute} matches {text}";
}

sealed class PortCondition((int From, int To)[] ranges, string text) : Condition
{
    public override string Attribute => "port";
    public override bool Matches(RequestAttributes a)
    {
        if (a.Port < 0) return false;
        foreach (var (f, t) in ranges)
            if (a.Port >= f && a.Port <= t) return true;
        return false;
    }
    public override string Describe() => $"port in {text}";
}

/// <summary>An exact, case-sensitive word among a few (method, command).</summary>
sealed class WordCondition(string[] words, string attribute, Func<RequestAttributes, string?> get) : Condition
{
    public override string Attribute => attribute;
    public override bool Matches(RequestAttributes a)
    {
        var v = get(a);
        if (v is null) return false;
        foreach (var w in words)
            if (string.Equals(v, w, StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }
    public override string Describe() => $"{attribute} in [{string.Join(", ", words)}]";
}

/// <summary>`upgrade`: the request asks to switch to one of these protocols (`websocket`), case-insensitive, version ignored.</summary>
sealed class UpgradeCondition(string[] protocols) : Condition
{
    public override string Attribute => "upgrade";
    public override bool Matches(RequestAttributes a)
    {
        if (a.Upgrade is not { } asked) return false;
        var all = asked.AsSpan();
        foreach (var range in all.Split(','))
        {
            var token = HeaderValue.TrimOws(all[range]);
            int slash = token.IndexOf('/');
            if (slash >= 0) token = token[..slash];
            foreach (var p in protocols)
                if (token.Equals(p, StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }
    public override string Describe() => $"upgrade in [{string.Join(", ", protocols)}]";
}

/// <summary>`path` and `url`: patterns compiled in both case modes; the listener's `path_case` picks one per request.</summary>
sealed class PathCondition(StringPattern[] sensitive, StringPattern[] insensitive, string attribute, Func<RequestAttributes, string?> get) : Condition
{
    public override string Attribute => attribute;
    public override bool Matches(RequestAttributes a)
    {
        var v = get(a);
        if (v is null) return false;
        foreach (var p in a.PathIgnoreCase ? insensitive : sensitive)
            if (p.IsMatch(v)) return true;
        return false;
    }
    public override string Describe() => $"{attribute} matches [{string.Join(", ", sensitive.Select(p => p.Text))}]";
}

/// <summary>
/// `content_type`: a response may name several media types (several field lines, or a comma list); each is judged
/// without its parameters, and the condition matches when any does (a browser may use any of them).
/// </summary>
sealed class ContentTypeCondition(StringPattern[] patterns) : Condition
{
    public override string Attribute => "content_type";
    public override bool IsResponse => true;
    public override bool Matches(RequestAttributes a)
    {
        if (a.ContentType is not { } v) return false;
        var all = v.AsSpan();
        foreach (var range in all.Split(','))
        {
            var type = all[range];
            int semi = type.IndexOf(';');
            if (semi >= 0) type = type[..semi];
            type = HeaderValue.TrimOws(type);
            if (type.IsEmpty) continue;
            foreach (var p in patterns)
                if (p.IsMatch(type)) return true;
        }
        return false;
    }
    public override string Describe() => $"content_type matches [{string.Join(", ", patterns.Select(p => p.Text))}]";
}

/// <summary>
/// `header`: every named header must be present, and one of its field lines, or one comma-separated element of
/// a line, must match one of its patterns: a duplicate line or an added element cannot dilute a deny (SPEC 2.1).
/// </summary>
sealed class HeaderCondition((string Name, StringPattern[] Patterns)[] headers) : Condition
{
    public override string Attribute => "header";
    public IEnumerable<string> Names => headers.Select(h => h.Name);
    public override bool Matches(RequestAttributes a)
    {
        if (a.Headers is not { } src) return false;
        foreach (var (name, patterns) in headers)
            if (!AnyLineMatches(src, name, patterns)) return false;
        return true;
    }

    static bool AnyLineMatches(IHeaderSource src, string name, StringPattern[] patterns)
    {
        for (int i = 0; src.TryGetLine(name, i, out var line); i++)
        {
            var v = line.AsSpan();
            if (AnyMatches(patterns, HeaderValue.TrimOws(v))) return true;
            if (v.IndexOf(',') < 0) continue;
            foreach (var range in v.Split(','))
                if (AnyMatches(patterns, HeaderValue.TrimOws(v[range]))) return true;
        }
        return false;
    }

    static bool AnyMatches(StringPattern[] patterns, ReadOnlySpan<char> v)
    {
        foreach (var p in patterns)
            if (p.IsMatch(v)) return true;
        return false;
    }

    public override string Describe() => "header " + string.Join(", ", headers.Select(h => $"{h.Name} matches [{string.Join(", ", h.Patterns.Select(p => p.Text))}]"));
}

/// <summary>Mail addresses: exact (case-insensitive), `*@domain`, or `@list` of addresses and domains.</summary>
public sealed class AddressMatcher(HashSet<string> addresses, DomainSet domains)
{
    public bool Matches(string address)
    {
        var a = address.AsSpan().Trim().Trim("<>");
        if (addresses.GetAlternateLookup<ReadOnlySpan<char>>().Contains(a)) return true;
        int at = a.LastIndexOf('@');
        return at >= 0 && domains.ContainsExact(a[(at + 1)..]);
    }
}

sealed class MailFromCondition(AddressMatcher m, string text) : Condition
{
    public override string Attribute => "mail_from";
    public override bool Matches(RequestAttributes a) => a.MailFrom is { } f && m.Matches(f);
    public override string Describe() => $"mail_from matches {text}";
}

sealed class RcptToCondition(AddressMatcher m, string text) : Condition
{
    public override string Attribute => "rcpt_to";
    public override bool Matches(RequestAttributes a)
    {
        if (a.RcptTo is not { } list) return false;
        for (int i = 0; i < list.Count; i++)
            if (m.Matches(list[i])) return true;
        return false;
    }
    public override string Describe() => $"rcpt_to matches {text}";
}

sealed class SizeCondition((char Op, long Bound)[] bounds, string text) : Condition
{
    public override string Attribute => "size";
    public override bool IsResponse => true;
    public override bool Matches(RequestAttributes a)
    {
        if (a.Size < 0) return false;
        foreach (var (op, bound) in bounds)
        {
            bool ok = op switch
            {
                '>' => a.Size > bound,
                'g' => a.Size >= bound,
                '<' => a.Size < bound,
                'l' => a.Size <= bound,
                _ => a.Size == bound,
            };
            if (ok) return true;
        }
        return false;
    }
    public override string Describe() => $"size {text}";
}

sealed class TimeCondition(TimeWindow[] windows) : Condition
{
    public override string Attribute => "time";
    public override bool Matches(RequestAttributes a)
    {
        var now = a.Time ?? DateTime.Now;
        foreach (var w in windows)
            if (w.Contains(now)) return true;
        return false;
    }
    public override string Describe() => $"time in [{string.Join(", ", windows.Select(w => w.Text))}]";
}

sealed class NotCondition(Condition[] inner) : Condition
{
    public override string Attribute => "not";
    public override bool IsResponse => inner.Any(c => c.IsResponse);
    public override bool JudgesAddresses => inner.Any(c => c.JudgesAddresses);
    public Condition[] Inner => inner;
    public override bool Matches(RequestAttributes a)
    {
        foreach (var c in inner)
            if (!c.Matches(a)) return true;
        return false;
    }
    public override string Describe() => $"not ({string.Join(" and ", inner.Select(c => c.Describe()))})";
}

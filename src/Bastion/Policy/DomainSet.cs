namespace Bastion.Policy;

/// <summary>
/// Domain names matched by suffix lookup: a name matches when it, or any parent domain of it, is in the set.
/// Lookups walk the labels of the name and probe a hash set with spans, so they allocate nothing and cost
/// one probe per label whatever the size of the list.
/// </summary>
public sealed class DomainSet
{
    readonly HashSet<string> _names;
    readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    public int Count => _names.Count;

    public DomainSet(IEnumerable<string> names)
    {
        _names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var n in names)
        {
            var t = Normalize(n);
            if (t.Length > 0) _names.Add(t);
        }
        _lookup = _names.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    // `.example.com` (Squid's dstdomain form) means the same as `example.com` here.
    static string Normalize(string n) => n.Trim().Trim('.');

    /// <summary>True when the host or one of its parent domains is in the set.</summary>
    public bool MatchesSelfOrParent(ReadOnlySpan<char> host)
    {
        host = host.TrimEnd('.');
        while (true)
        {
            if (_lookup.Contains(host)) return true;
            int dot = host.IndexOf('.');
            if (dot < 0) return false;
            host = host[(dot + 1)..];
        }
    }

    /// <summary>True when a strict parent domain of the host is in the set (the `*.example.com` form).</summary>
    public bool MatchesParentOnly(ReadOnlySpan<char> host)
    {
        host = host.TrimEnd('.');
        int dot = host.IndexOf('.');
        return dot >= 0 && MatchesSelfOrParent(host[(dot + 1)..]);
    }

    public bool ContainsExact(ReadOnlySpan<char> host) => _lookup.Contains(host.TrimEnd('.'));
}

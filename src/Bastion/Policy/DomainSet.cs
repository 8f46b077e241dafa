using System.Buffers;
using System.Runtime.CompilerServices;

namespace Bastion.Policy;

/// <summary>
/// Domain names matched by suffix lookup: a name matches when it, or any parent domain of it, is in the set.
/// Lookups walk the labels of the name and probe a hash table with spans, so they allocate nothing and cost
/// one probe per label whatever the size of the list. The names live lowercased in one char array with an
/// open-addressing index (no object per name), so that a million-entry list loads fast and costs the GC nothing.
/// </summary>
public sealed class DomainSet
{
    char[] _chars = new char[256];
    int _charCount;
    int[] _start = new int[8], _length = new int[8], _hash = new int[8];
    int[] _buckets = new int[16]; // entry index + 1; 0 = empty
    int _count;

    public int Count => _count;

    public DomainSet() { }

    public DomainSet(IEnumerable<string> names)
    {
        foreach (var n in names) Add(n);
    }

    /// <summary>Adds a name; `.example.com` (Squid's dstdomain form) means the same as `example.com` here.</summary>
    // Bulk loading runs before tiered JIT would optimise it: compile optimised at once.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Add(ReadOnlySpan<char> name)
    {
        name = name.Trim().Trim('.');
        if (name.IsEmpty) return;
        // IDN entries are kept as punycode, the form hosts are judged in (`bücher.test` is `xn--bcher-kva.test`).
        if (!System.Text.Ascii.IsValid(name))
        {
            if (Canonical.HostName.Normalize(name) is not { } idn) return;
            name = idn;
        }
        if (_charCount + name.Length > _chars.Length)
            Array.Resize(ref _chars, Math.Max(_chars.Length * 2, _charCount + name.Length));
        var dest = _chars.AsSpan(_charCount, name.Length);
        Lower(name, dest);
        int h = string.GetHashCode(dest);
        if (Find(dest, h) >= 0) return;
        if (_count == _start.Length)
        {
            int n = _count * 2;
            Array.Resize(ref _start, n);
            Array.Resize(ref _length, n);
            Array.Resize(ref _hash, n);
        }
        _start[_count] = _charCount;
        _length[_count] = name.Length;
        _hash[_count] = h;
        _charCount += name.Length;
        _count++;
        if (_count * 2 > _buckets.Length) Rehash(_buckets.Length * 2);
        else Insert(_count - 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Rehash(int size)
    {
        _buckets = new int[size];
        for (int i = 0; i < _count; i++) Insert(i);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Insert(int entry)
    {
        int mask = _buckets.Length - 1;
        int i = _hash[entry] & mask;
        while (_buckets[i] != 0) i = (i + 1) & mask;
        _buckets[i] = entry + 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    int Find(ReadOnlySpan<char> lower, int h)
    {
        int mask = _buckets.Length - 1;
        for (int i = h & mask; ; i = (i + 1) & mask)
        {
            int e = _buckets[i] - 1;
            if (e < 0) return -1;
            if (_hash[e] == h && _length[e] == lower.Length && _chars.AsSpan(_start[e], lower.Length).SequenceEqual(lower)) return e;
        }
    }

    bool ContainsLower(ReadOnlySpan<char> lower) => _count > 0 && Find(lower, string.GetHashCode(lower)) >= 0;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Lower(ReadOnlySpan<char> s, Span<char> dest)
    {
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            dest[i] = c is >= 'A' and <= 'Z' ? (char)(c | 0x20) : c < 128 ? c : char.ToLowerInvariant(c);
        }
    }

    // Hosts from the wire are lowercased into a stack buffer (a pooled one past DNS's 253 characters).
    delegate bool Probe(DomainSet set, ReadOnlySpan<char> lower);

    bool WithLower(ReadOnlySpan<char> host, Probe probe)
    {
        host = host.TrimEnd('.');
        if (host.Length <= 256)
        {
            Span<char> buf = stackalloc char[host.Length];
            Lower(host, buf);
            return probe(this, buf);
        }
        var rented = ArrayPool<char>.Shared.Rent(host.Length);
        try
        {
            var buf = rented.AsSpan(0, host.Length);
            Lower(host, buf);
            return probe(this, buf);
        }
        finally { ArrayPool<char>.Shared.Return(rented); }
    }

    static readonly Probe SelfOrParent = static (s, h) =>
    {
        while (true)
        {
            if (s.ContainsLower(h)) return true;
            int dot = h.IndexOf('.');
            if (dot < 0) return false;
            h = h[(dot + 1)..];
        }
    };

    static readonly Probe ParentOnly = static (s, h) =>
    {
        int dot = h.IndexOf('.');
        return dot >= 0 && SelfOrParent(s, h[(dot + 1)..]);
    };

    static readonly Probe Exact = static (s, h) => s.ContainsLower(h);

    /// <summary>True when the host or one of its parent domains is in the set.</summary>
    public bool MatchesSelfOrParent(ReadOnlySpan<char> host) => _count > 0 && WithLower(host, SelfOrParent);

    /// <summary>True when a strict parent domain of the host is in the set (the `*.example.com` form).</summary>
    public bool MatchesParentOnly(ReadOnlySpan<char> host) => _count > 0 && WithLower(host, ParentOnly);

    public bool ContainsExact(ReadOnlySpan<char> host) => _count > 0 && WithLower(host, Exact);
}

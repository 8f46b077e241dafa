using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Policy;

/// <summary>
/// A set of IPv4 and IPv6 prefixes kept as sorted, merged address ranges: a lookup is one binary search,
/// whatever the number of prefixes. IPv4-mapped IPv6 addresses are judged as IPv4.
/// </summary>
public sealed class CidrSet
{
    readonly uint[] _v4Start, _v4End;
    readonly UInt128[] _v6Start, _v6End;

    public int Count => _v4Start.Length + _v6Start.Length;

    CidrSet(List<(uint, uint)> v4, List<(UInt128, UInt128)> v6)
    {
        (_v4Start, _v4End) = Merge(v4);
        (_v6Start, _v6End) = Merge(v6);
    }

    static (T[], T[]) Merge<T>(List<(T S, T E)> ranges) where T : struct, IComparable<T>, System.Numerics.IIncrementOperators<T>, System.Numerics.IMinMaxValue<T>
    {
        ranges.Sort((a, b) => a.S.CompareTo(b.S));
        var starts = new List<T>();
        var ends = new List<T>();
        foreach (var (s, e) in ranges)
        {
            if (starts.Count > 0)
            {
                var last = ends[^1];
                // Adjacent or overlapping: extend (careful at the top of the address space).
                if (last.CompareTo(T.MaxValue) == 0 || s.CompareTo(Inc(last)) <= 0)
                {
                    if (e.CompareTo(last) > 0) ends[^1] = e;
                    continue;
                }
            }
            starts.Add(s);
            ends.Add(e);
        }
        return (starts.ToArray(), ends.ToArray());

        static T Inc(T v) { v++; return v; }
    }

    public static bool TryParsePrefix(string text, out IPAddress? address, out int prefix)
    {
        address = null;
        prefix = -1;
        var slash = text.IndexOf('/');
        var ipText = slash < 0 ? text : text[..slash];
        // IPAddress.TryParse takes inet_aton shorthands ("10", "10.1"): a typo like 10.0.0/8 must not pass as 10.0.0.0/8.
        if (!ipText.Contains(':') && ipText.AsSpan().Count('.') != 3) return false;
        if (!IPAddress.TryParse(ipText, out var ip)) return false;
        bool mapped = ip.IsIPv4MappedToIPv6;
        if (mapped) ip = ip.MapToIPv4();
        int max = ip.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        if (slash < 0) prefix = max;
        else
        {
            if (!int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, null, out prefix)) return false;
            // ::ffff:10.0.0.0/104 is 10.0.0.0/8.
            if (mapped) prefix -= 96;
            if (prefix < 0 || prefix > max) return false;
        }
        address = ip;
        return true;
    }

    /// <summary>Builds a set; entries that are not an IP or CIDR are returned in <paramref name="bad"/>.</summary>
    public static CidrSet Build(IEnumerable<string> entries, List<string>? bad = null)
    {
        var v4 = new List<(uint, uint)>();
        var v6 = new List<(UInt128, UInt128)>();
        Span<byte> b = stackalloc byte[16];
        foreach (var raw in entries)
        {
            var e = raw.Trim();
            if (!TryParsePrefix(e, out var ip, out var prefix)) { bad?.Add(raw); continue; }
            ip!.TryWriteBytes(b, out int len);
            if (len == 4)
            {
                uint a = BinaryPrimitives.ReadUInt32BigEndian(b);
                uint mask = prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);
                v4.Add((a & mask, (a & mask) | ~mask));
            }
            else
            {
                UInt128 a = BinaryPrimitives.ReadUInt128BigEndian(b);
                UInt128 mask = prefix == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - prefix);
                v6.Add((a & mask, (a & mask) | ~mask));
            }
        }
        return new CidrSet(v4, v6);
    }

    public bool Contains(IPAddress ip)
    {
        Span<byte> b = stackalloc byte[16];
        if (!ip.TryWriteBytes(b, out int len)) return false;
        if (len == 16 && ip.IsIPv4MappedToIPv6)
            return ContainsV4(BinaryPrimitives.ReadUInt32BigEndian(b[12..]));
        return len == 4
            ? ContainsV4(BinaryPrimitives.ReadUInt32BigEndian(b))
            : Find(_v6Start, _v6End, BinaryPrimitives.ReadUInt128BigEndian(b));
    }

    bool ContainsV4(uint a) => Find(_v4Start, _v4End, a);

    static bool Find<T>(T[] starts, T[] ends, T a) where T : IComparable<T>
    {
        int lo = 0, hi = starts.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (starts[mid].CompareTo(a) <= 0)
            {
                if (ends[mid].CompareTo(a) >= 0) return true;
                lo = mid + 1;
            }
            else hi = mid - 1;
        }
        return false;
    }
}

using System.Net;
using System.Net.Sockets;

namespace Bastion.Policy;

/// <summary>
/// Addresses as the kernel connects to them, and the built-in `@private` list: what address rules judge after DNS
/// (SPEC 2.1) so that no name, and no spelling of an address, reaches what a CIDR rule denies.
/// </summary>
public static class TargetAddress
{
    /// <summary>The name of the built-in list of non-public destinations, used as `host: "@private"`.</summary>
    public const string PrivateList = "private";

    /// <summary>
    /// Every range that is not a public unicast destination: this host and "this network", RFC 1918, shared
    /// address space (RFC 6598, where some clouds keep their metadata service), loopback, link-local (with the
    /// 169.254.169.254 metadata address), IETF-reserved, benchmarking, multicast, reserved and broadcast; for IPv6
    /// the unspecified and loopback addresses, IPv4-compatible forms, discard-only, unique local
    /// (fd00:ec2::254 included), site-local, link-local and multicast. IPv4-mapped IPv6 addresses are judged as the
    /// IPv4 address they carry.
    /// </summary>
    public static readonly string[] PrivateRanges =
    [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
        "::/96", "100::/64", "fc00::/7", "fec0::/10", "fe80::/10", "ff00::/8",
    ];

    /// <summary>
    /// The address a connection to <paramref name="ip"/> really reaches: the unspecified address (0.0.0.0, ::) is
    /// this host's loopback on Linux, and an IPv4-mapped IPv6 address is its IPv4 address.
    /// </summary>
    public static IPAddress Effective(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        if (ip.AddressFamily == AddressFamily.InterNetwork && ip.Equals(IPAddress.Any)) return IPAddress.Loopback;
        if (ip.AddressFamily == AddressFamily.InterNetworkV6 && ip.Equals(IPAddress.IPv6Any)) return IPAddress.IPv6Loopback;
        if (ip.AddressFamily == AddressFamily.InterNetworkV6 && ip.ScopeId != 0) return new IPAddress(ip.GetAddressBytes());
        return ip;
    }
}

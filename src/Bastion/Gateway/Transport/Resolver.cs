using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Policy.Canonical;

namespace Bastion.Gateway;

/// <summary>
/// Turns the hosts clients name into addresses (`resolver:`): IP literals as they are, then the hosts file, then
/// `localhost` and `*.localhost` as loopback (RFC 6761), then, unless `dns: off`, the system's DNS. Answers are kept
/// a few seconds, so that the address judged is the address connected to and a busy name costs one lookup.
/// Hosts must be normalised (<see cref="HostName"/>) first: what is looked up is what was judged.
/// </summary>
public sealed class Resolver
{
    static readonly TimeSpan CacheTtl = TimeSpan.FromSeconds(10);
    const int MaxCached = 10_000;

    readonly Dictionary<string, IPAddress[]> _hosts;
    readonly ConcurrentDictionary<string, (IPAddress[] Addresses, long Expires)> _cache = new(StringComparer.Ordinal);

    /// <summary>Whether names missing from the hosts file go to the system's DNS.</summary>
    public bool SystemDns { get; }
    public int HostsCount => _hosts.Count;

    public Resolver(Dictionary<string, IPAddress[]> hosts, bool systemDns)
    {
        _hosts = hosts;
        SystemDns = systemDns;
    }

    /// <summary>No hosts file, system DNS: what a configuration without `resolver:` gets.</summary>
    public static readonly Resolver Default = new([], systemDns: true);

    public static Resolver Load(BastionConfig config, List<ConfigError> errors)
    {
        if (config.Resolver is not { } rc) return Default;
        var hosts = new Dictionary<string, IPAddress[]>(StringComparer.Ordinal);
        if (rc.HostsFile is { } file)
        {
            var path = config.Resolve(file);
            try
            {
                hosts = ParseHostsFile(File.ReadAllText(path), out var bad);
                foreach (var b in bad) errors.Add(new ConfigError(rc.Pos, $"resolver.hosts {path}: {b}"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                errors.Add(new ConfigError(rc.Pos, $"resolver.hosts: cannot read {path}: {e.Message}"));
            }
        }
        return new Resolver(hosts, rc.SystemDns);
    }

    /// <summary>/etc/hosts format: `ADDRESS NAME [NAME...]`, '#' comments; a name on several lines has every address.</summary>
    public static Dictionary<string, IPAddress[]> ParseHostsFile(string text, out List<string> problems)
    {
        problems = [];
        var map = new Dictionary<string, List<IPAddress>>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw;
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            var parts = line.Split([' ', '\t', '\r'], StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            if (parts.Length < 2 || !IPAddress.TryParse(parts[0], out var ip) || parts[0].Contains('%'))
            {
                problems.Add($"line {lineNo}: expected 'ADDRESS NAME...'");
                continue;
            }
            foreach (var n in parts.AsSpan(1))
            {
                if (!HostName.TryNormalize(n, out var name, out var err) || IPAddress.TryParse(name, out _))
                {
                    problems.Add($"line {lineNo}: '{n}' is not a host name{(err is null ? "" : $" ({err})")}");
                    continue;
                }
                if (!map.TryGetValue(name, out var list)) map[name] = list = [];
                if (!list.Contains(ip)) list.Add(ip);
            }
        }
        return map.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray(), StringComparer.Ordinal);
    }

    /// <summary>The addresses of a normalised host, with a deadline; an error instead of an exception when there are none.</summary>
    public async ValueTask<(IPAddress[] Addresses, SocketError Error)> ResolveAsync(string host, TimeSpan timeout, CancellationToken ct)
    {
        if (IPAddress.TryParse(host, out var literal)) return ([literal], SocketError.Success);
        if (_hosts.TryGetValue(host, out var fixedAddresses)) return (fixedAddresses, SocketError.Success);
        if (host == "localhost" || host.EndsWith(".localhost", StringComparison.Ordinal))
            return ([IPAddress.Loopback, IPAddress.IPv6Loopback], SocketError.Success);
        if (!SystemDns) return ([], SocketError.HostNotFound);
        long now = Environment.TickCount64;
        if (_cache.TryGetValue(host, out var hit) && hit.Expires > now) return (hit.Addresses, SocketError.Success);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            var list = await Dns.GetHostAddressesAsync(host, cts.Token).ConfigureAwait(false);
            if (list.Length == 0) return ([], SocketError.HostNotFound);
            if (_cache.Count >= MaxCached) _cache.Clear();
            _cache[host] = (list, now + (long)CacheTtl.TotalMilliseconds);
            return (list, SocketError.Success);
        }
        catch (SocketException e) { return ([], e.SocketErrorCode); }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested) { return ([], SocketError.TimedOut); }
    }
}

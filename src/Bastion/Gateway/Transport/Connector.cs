using System.Net;
using System.Net.Sockets;
using Bastion.Policy;

namespace Bastion.Gateway;

/// <summary>
/// A client-named host after DNS and the address rules: the addresses that may be connected to, or why none may.
/// <see cref="Denied"/> is set when the name resolved but the policy refused every address.
/// </summary>
public readonly record struct JudgedAddresses(IPAddress[] Allowed, SocketError Error, Decision? Denied)
{
    public bool Ok => Allowed.Length > 0;
}

/// <summary>Outcome of opening an upstream connection: the socket, or why not.</summary>
public readonly record struct ConnectResult(Socket? Socket, SocketError Error, string? Message)
{
    public bool Ok => Socket is not null;
}

/// <summary>Opens upstream TCP connections with a deadline, trying each address in turn (no exceptions for expected failures).</summary>
public static class Connector
{
    public static async Task<ConnectResult> ConnectAsync(IReadOnlyList<IPAddress> addresses, int port, TimeSpan timeout, CancellationToken ct)
    {
        if (addresses.Count == 0) return new ConnectResult(null, SocketError.HostNotFound, "no address");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var last = SocketError.HostUnreachable;
        string? message = null;
        foreach (var ip in addresses)
        {
            var s = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await s.ConnectAsync(new IPEndPoint(ip, port), cts.Token).ConfigureAwait(false);
                return new ConnectResult(s, SocketError.Success, null);
            }
            catch (SocketException e)
            {
                s.Dispose();
                last = e.SocketErrorCode;
                message = e.Message;
            }
            catch (OperationCanceledException)
            {
                s.Dispose();
                if (ct.IsCancellationRequested) throw;
                return new ConnectResult(null, SocketError.TimedOut, $"connect timed out after {timeout.TotalSeconds:0.#}s");
            }
        }
        return new ConnectResult(null, last, message);
    }

    /// <summary>
    /// Resolves a host a client named and asks the policy about every address it resolves to (SPEC 2.1), before
    /// anything connects: only addresses no address rule denies are returned. Every listener that connects where
    /// a client says (http-proxy, socks5 CONNECT and UDP, ftp and smtp with client-chosen upstreams) goes through
    /// here. <paramref name="a"/> holds the request's attributes, already allowed on the name.
    /// </summary>
    public static async ValueTask<JudgedAddresses> ResolveJudgedAsync(Resolver resolver, CompiledPolicy policy,
        RequestAttributes a, string host, TimeSpan timeout, CancellationToken ct)
    {
        var (addresses, error) = await resolver.ResolveAsync(host, timeout, ct).ConfigureAwait(false);
        if (addresses.Length == 0) return new JudgedAddresses([], error == SocketError.Success ? SocketError.HostNotFound : error, null);
        return Judge(policy, a, addresses);
    }

    /// <summary>The address rules on resolved addresses; allocation-free when every address passes.</summary>
    public static JudgedAddresses Judge(CompiledPolicy policy, RequestAttributes a, IPAddress[] addresses)
    {
        if (!policy.HasAddressRules) return new JudgedAddresses(addresses, SocketError.Success, null);
        List<IPAddress>? kept = null;
        Decision? firstDenied = null;
        for (int i = 0; i < addresses.Length; i++)
        {
            if (policy.JudgeAddress(a, addresses[i]) is { Allowed: false } d)
            {
                firstDenied ??= d;
                kept ??= [.. addresses.AsSpan(0, i)];
            }
            else kept?.Add(addresses[i]);
        }
        if (kept is null) return new JudgedAddresses(addresses, SocketError.Success, null);
        return kept.Count > 0
            ? new JudgedAddresses([.. kept], SocketError.Success, null)
            : new JudgedAddresses([], SocketError.AccessDenied, firstDenied);
    }

    /// <summary>Resolves a name (or takes an IP literal) with a deadline.</summary>
    public static async Task<(IPAddress[] Addresses, SocketError Error)> ResolveAsync(string host, TimeSpan timeout, CancellationToken ct)
    {
        if (IPAddress.TryParse(host, out var ip)) return ([ip], SocketError.Success);
        // RFC 6761 §6.3: localhost and names under it are loopback, without asking DNS.
        if (host == "localhost" || host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
            return ([IPAddress.Loopback, IPAddress.IPv6Loopback], SocketError.Success);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            var list = await Dns.GetHostAddressesAsync(host, cts.Token).ConfigureAwait(false);
            return list.Length == 0 ? ([], SocketError.HostNotFound) : (list, SocketError.Success);
        }
        catch (SocketException e) { return ([], e.SocketErrorCode); }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested) { return ([], SocketError.TimedOut); }
    }
}

using System.Net;
using System.Net.Sockets;

namespace Bastion.Gateway;

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

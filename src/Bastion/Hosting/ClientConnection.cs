using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Hosting;

/// <summary>Short unique ids for connections and requests: a per-process random prefix and a counter.</summary>
public static class Ids
{
    static readonly string Prefix = Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.Next()))[..6];
    static long _next;

    public static long NextNumber() => Interlocked.Increment(ref _next);

    public static string Next() => $"{Prefix}-{NextNumber():x}";

    public static string Of(long n) => $"{Prefix}-{n:x}";
}

/// <summary>A client connection as the admin API sees it, whatever the protocol.</summary>
public sealed class ClientConnection
{
    public long Number { get; } = Ids.NextNumber();
    public string Id => Ids.Of(Number);
    public required string Listener { get; init; }
    public required string Type { get; init; }
    /// <summary>The client; replaced by the address a trusted PROXY protocol header names.</summary>
    public required IPEndPoint Client { get; set; }
    public IPEndPoint? Local { get; init; }
    /// <summary>The PROXY protocol header a trusted front sent, if any (its destination is the address the client dialled).</summary>
    public ProxyHeader? ProxyHeader { get; set; }
    public Socket? Socket { get; init; }
    public DateTime Started { get; } = DateTime.UtcNow;
    public long StartTimestamp { get; } = System.Diagnostics.Stopwatch.GetTimestamp();
    public string? User { get; set; }
    public string? Target { get; set; }
    /// <summary>Bytes from the client, and to the client; updated with Interlocked by the relays.</summary>
    public long BytesIn;
    public long BytesOut;
    readonly CancellationTokenSource _abort = new();

    public CancellationToken Aborted => _abort.Token;

    /// <summary>Cancelled when the gateway starts to stop: idle connections close now, busy ones finish first.</summary>
    public CancellationToken Draining { get; init; }

    public void Abort()
    {
        try { _abort.Cancel(); }
        catch (ObjectDisposedException) { }
    }

    public string ClientText => Client.ToString();

    public TimeSpan Age => System.Diagnostics.Stopwatch.GetElapsedTime(StartTimestamp);
}

/// <summary>Every open client connection, for /api/connections, limits and draining.</summary>
public sealed class ConnectionRegistry
{
    readonly ConcurrentDictionary<long, ClientConnection> _open = new();

    public int Count => _open.Count;

    public IEnumerable<ClientConnection> All => _open.Values;

    public void Add(ClientConnection c) => _open[c.Number] = c;

    public void Remove(ClientConnection c) => _open.TryRemove(c.Number, out _);

    public int CountFor(string listener) => _open.Values.Count(c => c.Listener == listener);
}

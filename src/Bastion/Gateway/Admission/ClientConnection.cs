using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Gateway;

/// <summary>Short unique ids for connections and requests: a per-process random prefix and a counter.</summary>
public static class Ids
{
    static readonly string Prefix = Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.Next()))[..6];
    static long _next;

    public static long NextNumber() => Interlocked.Increment(ref _next);

    public static string Next() => $"{Prefix}-{NextNumber():x}";

    public static string Of(long n) => $"{Prefix}-{n:x}";

    /// <summary>The id of number <paramref name="n"/> as UTF-8 (the access log writes it without making the string).</summary>
    public static bool TryFormat(long n, Span<byte> destination, out int written) =>
        System.Text.Unicode.Utf8.TryWrite(destination, $"{Prefix}-{n:x}", out written);
}

/// <summary>A client connection as the admin API sees it, whatever the protocol.</summary>
public sealed class ClientConnection
{
    public long Number { get; } = Ids.NextNumber();
    public string Id => _id ??= Ids.Of(Number);
    string? _id;
    public required string Listener { get; init; }
    public required string Type { get; init; }
    /// <summary>The client; replaced by the address a trusted PROXY protocol header names.</summary>
    public required IPEndPoint Client { get; set; }
    public IPEndPoint? Local { get; init; }
    /// <summary>The PROXY protocol header a trusted front sent, if any (its destination is the address the client dialled).</summary>
    public ProxyHeader? ProxyHeader { get; set; }
    /// <summary>The client side as a stream with pipes over it: what protocols read and write.</summary>
    public required Transport Transport { get; init; }
    /// <summary>The client's socket when there is one (the relay's socket-to-socket fast path); the same as Transport.Socket.</summary>
    public Socket? Socket => Transport.Socket;
    /// <summary>The connection this one serves (an FTP data channel's control connection); null for client connections.</summary>
    public ClientConnection? Parent { get; private set; }
    /// <summary>The connection's own record: protocols set its Request, Status and Reason; <see cref="Admission.Release"/> writes it as the closed line.</summary>
    public Exchange Record { get; internal set; } = null!;
    internal CancellationTokenRegistration DrainRegistration;
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

    readonly List<ClientConnection> _children = [];

    /// <summary>Connections opened on behalf of this one (FTP data channels), open now.</summary>
    public ClientConnection[] Children
    {
        get { lock (_children) return [.. _children]; }
    }

    /// <summary>
    /// Links <paramref name="child"/> to this connection: it is aborted when this one is. Register it with
    /// <see cref="ConnectionRegistry.Add"/> as any connection (the admin API lists it with its parent), and
    /// <see cref="RemoveChild"/> plus <see cref="ConnectionRegistry.Remove"/> when it ends.
    /// </summary>
    public void AddChild(ClientConnection child)
    {
        child.Parent = this;
        lock (_children) _children.Add(child);
        if (Aborted.IsCancellationRequested) child.Abort();
        else child._parentAbort = Aborted.UnsafeRegister(static c => ((ClientConnection)c!).Abort(), child);
    }

    public void RemoveChild(ClientConnection child)
    {
        lock (_children) _children.Remove(child);
        child._parentAbort.Dispose();
    }

    CancellationTokenRegistration _parentAbort;

    /// <summary>The client as text, made once per address (every request's log line names it).</summary>
    public string ClientText
    {
        get
        {
            var c = Client;
            if (_clientText is { } t && ReferenceEquals(t.Of, c)) return t.Text;
            var text = c.ToString();
            _clientText = new ClientName(c, text);
            return text;
        }
    }
    // One reference (read and written whole): the address and its text always belong together.
    ClientName? _clientText;
    sealed record ClientName(IPEndPoint Of, string Text);

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

using System.Diagnostics;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Observability;
using Bastion.Policy;

namespace Bastion.Gateway;

/// <summary>
/// The record of one request, command, transfer or connection: a session opens it
/// (<see cref="ListenerContext.Open(ClientConnection, string)"/>), fills in what it learns, counts bytes through it,
/// and closes it once. <see cref="Close"/> writes the one access-log event and the metrics, from one place.
/// Byte counts go to the exchange, its connection's live counters and the listener's metrics together.
/// </summary>
public sealed class Exchange
{
    readonly ListenerContext _ctx;
    long _start = Stopwatch.GetTimestamp();
    long _in, _out;
    long _responseAt;
    int _closed;

    internal Exchange(ListenerContext ctx, ClientConnection? conn, string kind, string? client, string? id)
    {
        _ctx = ctx;
        Connection = conn;
        Kind = kind;
        _id = id ?? (kind == ExchangeKinds.Connection && conn is not null ? conn.Id : null);
        if (_id is null) _idNumber = Ids.NextNumber();
        Client = client ?? conn?.ClientText;
    }

    /// <summary>"request", "connection" or "transfer" (<see cref="ExchangeKinds"/>).</summary>
    public string Kind { get; }
    /// <summary>The request id (a connection's own id for a connection record).</summary>
    public string Id => _id ??= Ids.Of(_idNumber);
    // A request's id is a number until someone asks for its text (an error page): the log line writes the number.
    string? _id;
    long _idNumber;
    /// <summary>The connection it belongs to; null for a connection refused before it was registered.</summary>
    public ClientConnection? Connection { get; }
    /// <summary>The connection id, for correlating requests with their connection.</summary>
    public string? ConnectionId => Connection?.Id;
    public string? Client { get; set; }
    /// <summary>The authenticated user; unless set, the connection's at the time of closing.</summary>
    public string? User { get => _user ?? Connection?.User; set => _user = value; }
    string? _user;
    /// <summary>The request as the protocol writes it: `GET http://h/p`, `CONNECT h:443`, `RCPT TO:&lt;a@b&gt;`.</summary>
    public string? Request { get; set; }
    /// <summary>The protocol's answer: HTTP status, SOCKS reply code, SMTP/FTP reply code.</summary>
    public int Status { get; set; }
    /// <summary>The upstream it went to (host:port or URL prefix), when it went anywhere.</summary>
    public string? Upstream { get; set; }
    /// <summary>The configured upstream target that served it (reverse proxy), whose latency it adds to.</summary>
    public UpstreamTarget? Target { get; private set; }

    /// <summary>The request goes to <paramref name="t"/> of an upstream set: the log names it, its metrics count it.</summary>
    public void ServedBy(UpstreamTarget t)
    {
        Target = t;
        Upstream = t.Label;
    }
    /// <summary>The TLS state worth logging (protocol version, SNI), when any.</summary>
    public string? Tls { get; set; }
    /// <summary>The TLS server name the client sent (inspected or peeked CONNECT tunnels).</summary>
    public string? Sni { get; set; }
    public string? Reason { get; set; }
    public Verdict? Verdict { get; private set; }
    public string? Rule { get; private set; }
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    public long BytesIn => Kind == ExchangeKinds.Connection && Connection is { } c ? Interlocked.Read(ref c.BytesIn) : Interlocked.Read(ref _in);
    public long BytesOut => Kind == ExchangeKinds.Connection && Connection is { } c ? Interlocked.Read(ref c.BytesOut) : Interlocked.Read(ref _out);

    /// <summary>The policy's (or a pseudo-rule's) decision; the reason is kept unless the decision carries one.</summary>
    public Exchange Decide(Decision d)
    {
        Verdict = d.Verdict;
        Rule = d.RuleName;
        Reason = d.Reason ?? Reason;
        return this;
    }

    public Exchange Deny(string? rule, string? reason)
    {
        Verdict = Bastion.Configuration.Verdict.Deny;
        Rule = rule;
        Reason = reason;
        return this;
    }

    public Exchange Allow(string? rule, string? reason = null)
    {
        Verdict = Bastion.Configuration.Verdict.Allow;
        Rule = rule;
        Reason = reason;
        return this;
    }

    /// <summary>Bytes from the client. A connection record counts straight into its connection's counters.</summary>
    public void AddIn(long n)
    {
        if (n == 0) return;
        if (Kind != ExchangeKinds.Connection) Interlocked.Add(ref _in, n);
        if (Connection is { } c) Interlocked.Add(ref c.BytesIn, n);
        _ctx.Metrics.Bytes(_ctx.Name, n, 0);
    }

    /// <summary>Bytes to the client.</summary>
    public void AddOut(long n)
    {
        if (n == 0) return;
        if (Kind != ExchangeKinds.Connection) Interlocked.Add(ref _out, n);
        if (Connection is { } c) Interlocked.Add(ref c.BytesOut, n);
        _ctx.Metrics.Bytes(_ctx.Name, 0, n);
    }

    /// <summary>For relays: (fromClient, toClient) deltas.</summary>
    public void AddBytes(long fromClient, long toClient)
    {
        AddIn(fromClient);
        AddOut(toClient);
    }

    Action<long, long>? _counter;

    /// <summary>A cached delegate for <see cref="AddBytes"/>, to hand to a relay.</summary>
    public Action<long, long> Counter => _counter ??= AddBytes;

    long _sentAt;

    /// <summary>HTTP: the request's protocol (HTTP/1.1, HTTP/2), Referer and User-Agent, the response's media type;
    /// for the combined and template log formats.</summary>
    public string? Protocol { get; set; }
    public string? Referer { get; set; }
    public string? UserAgent { get; set; }
    public string? ContentType { get; set; }

    /// <summary>The request went upstream now (else upstream latency is measured from the exchange's start).</summary>
    public void UpstreamSent() => _sentAt = Stopwatch.GetTimestamp();

    /// <summary>The upstream's response head arrived: upstream latency is observed when the exchange closes.</summary>
    public void ResponseStarted() => _responseAt = Stopwatch.GetTimestamp();

    public TimeSpan Elapsed => Kind == ExchangeKinds.Connection && Connection is { } c ? c.Age : Stopwatch.GetElapsedTime(_start);

    /// <summary>
    /// The record, closed, made ready for its connection's next request (HTTP/1.1 keep-alive): cleared, with a new
    /// id and start. One record per connection instead of one per request.
    /// </summary>
    internal Exchange Reopen()
    {
        if (!IsClosed || Kind != ExchangeKinds.Request) throw new InvalidOperationException("only a closed request record is reopened");
        _id = null;
        _idNumber = Ids.NextNumber();
        _start = Stopwatch.GetTimestamp();
        _in = _out = 0;
        _responseAt = _sentAt = 0;
        _user = null;
        Request = Upstream = Tls = Sni = Reason = Rule = null;
        Protocol = Referer = UserAgent = ContentType = null;
        Target = null;
        Verdict = null;
        Status = 0;
        Client = Connection?.ClientText;
        Volatile.Write(ref _closed, 0);
        return this;
    }

    /// <summary>Writes the access-log event and the metrics. Only the first call does anything.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        TimeSpan? upstream = _responseAt != 0 ? Stopwatch.GetElapsedTime(_sentAt != 0 ? _sentAt : _start, _responseAt) : null;
        if (upstream is { } latency)
        {
            _ctx.Metrics.UpstreamLatency(_ctx.Name, latency);
            Target?.Meter?.Latency(latency);
        }
        if (Kind == ExchangeKinds.Request && _ctx.Type is ListenerType.HttpProxy or ListenerType.HttpReverse) _ctx.Metrics.Response(_ctx.Name, Status);
        var e = AccessEvent.Rent(_id, _idNumber, _ctx.Name, _ctx.TypeName);
        e.UpstreamMs = upstream?.TotalMilliseconds;
        e.Protocol = Protocol;
        e.Referer = Referer;
        e.UserAgent = UserAgent;
        e.ContentType = ContentType;
        e.Event = Kind;
        e.Conn = ConnectionId;
        e.Client = Client;
        e.User = User;
        e.Request = Request;
        e.Verdict = Verdict;
        e.Rule = Rule;
        e.Reason = Reason;
        e.Status = Status;
        e.Upstream = Upstream;
        e.Tls = Tls;
        e.Sni = Sni;
        e.BytesIn = BytesIn;
        e.BytesOut = BytesOut;
        e.DurationMs = Elapsed.TotalMilliseconds;
        _ctx.Record(e);
    }
}

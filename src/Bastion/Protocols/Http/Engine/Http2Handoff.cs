using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.Http.Engine;

/// <summary>
/// Kestrel, for HTTP/2 only. The gateway terminates TLS itself (the reverse proxy with its certificates, an
/// inspected tunnel with a minted one); a connection that chose h2 is handed to this Kestrel server through an
/// in-process transport (a custom <see cref="IConnectionListenerFactory"/>), and served by the handler the listener
/// type gives (on YARP). Kestrel never listens on a socket of its own.
/// </summary>
public sealed class Http2Handoff : IAsyncDisposable
{
    readonly Channel<ConnectionContext> _incoming = Channel.CreateUnbounded<ConnectionContext>();
    WebApplication? _app;

    /// <param name="handler">The request handler, made once from the server's services (YARP's forwarder).</param>
    public static async Task<Http2Handoff> StartAsync(ListenerContext ctx, Limits limits, Func<IServiceProvider, RequestDelegate> handler, CancellationToken ct)
    {
        var self = new Http2Handoff();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "bastion" });
        builder.Services.AddLogging(b => b.ClearProviders());
        builder.Services.AddHttpForwarder();
        builder.WebHost.UseKestrelCore();
        builder.Services.AddSingleton<IConnectionListenerFactory>(new Factory(self._incoming));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            // Header values as bytes (Latin-1), so obs-text crosses byte for byte as on the HTTP/1.1 engine.
            k.RequestHeaderEncodingSelector = static _ => System.Text.Encoding.Latin1;
            k.Limits.MaxRequestBodySize = limits.MaxRequestBody > 0 ? limits.MaxRequestBody : null;
            k.Limits.MaxRequestHeadersTotalSize = limits.MaxHeaderSize;
            k.Limits.Http2.MaxRequestHeaderFieldSize = Math.Max(4096, limits.MaxHeaderSize);
            k.Limits.KeepAliveTimeout = limits.IdleTimeout;
            k.Limits.RequestHeadersTimeout = limits.HeaderTimeout;
            k.Listen(new HandoffEndPoint(ctx.Name), lo => lo.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        app.Run(handler(app.Services));
        await app.StartAsync(ct).ConfigureAwait(false);
        self._app = app;
        return self;
    }

    /// <summary>Serves one TLS connection that negotiated h2 until Kestrel is done with it.</summary>
    /// <param name="feature">One more connection feature for the handler (an inspected tunnel's origin).</param>
    public Task ServeAsync(SslStream ssl, Socket socket, ClientConnection conn, object? feature = null)
    {
        var remote = conn.ProxyHeader?.Source ?? conn.Client;
        var local = conn.ProxyHeader?.Destination ?? conn.Local ?? (IPEndPoint)socket.LocalEndPoint!;
        var c = new HandoffConnection(conn, ssl, socket, remote, local);
        if (feature is not null) c.Features[feature.GetType()] = feature;
        if (!_incoming.Writer.TryWrite(c)) return Task.CompletedTask;
        return c.Done;
    }

    public async Task StopAsync(CancellationToken drain)
    {
        if (_app is not { } app) return;
        _app = null;
        // Kestrel lets streams finish until drain (GOAWAY), then aborts them.
        try { await app.StopAsync(drain).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
        await app.DisposeAsync().ConfigureAwait(false);
        _incoming.Writer.TryComplete();
    }

    public async ValueTask DisposeAsync()
    {
        using var none = new CancellationTokenSource(TimeSpan.Zero);
        await StopAsync(none.Token).ConfigureAwait(false);
    }

    sealed class HandoffEndPoint(string name) : EndPoint
    {
        public override string ToString() => $"bastion-h2:{name}";
    }

    sealed class Factory(Channel<ConnectionContext> incoming) : IConnectionListenerFactory, IConnectionListenerFactorySelector
    {
        public bool CanBind(EndPoint endpoint) => endpoint is HandoffEndPoint;

        public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken ct = default) =>
            ValueTask.FromResult<IConnectionListener>(new Listener(endpoint, incoming));
    }

    sealed class Listener(EndPoint endpoint, Channel<ConnectionContext> incoming) : IConnectionListener
    {
        public EndPoint EndPoint => endpoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken ct = default)
        {
            try { return await incoming.Reader.ReadAsync(ct).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or ChannelClosedException) { return null; }
        }

        public ValueTask UnbindAsync(CancellationToken ct = default)
        {
            incoming.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync() => UnbindAsync();
    }

    /// <summary>
    /// A decrypted connection as Kestrel sees one: pipes over the SslStream, the client's (or the PROXY header's)
    /// addresses, TLS features saying h2 was negotiated (so that the scheme is https), and the gateway's
    /// <see cref="ClientConnection"/> for the handler.
    /// </summary>
    sealed class HandoffConnection : ConnectionContext, ITlsConnectionFeature, ITlsApplicationProtocolFeature, IConnectionIdFeature
    {
        readonly Socket _socket;
        readonly CancellationTokenSource _closed = new();
        readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        readonly FeatureCollection _features = new();

        public HandoffConnection(ClientConnection conn, SslStream ssl, Socket socket, EndPoint remote, EndPoint local)
        {
            _socket = socket;
            ConnectionId = conn.Id;
            Transport = new Pipes(
                PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true)),
                PipeWriter.Create(ssl, new StreamPipeWriterOptions(leaveOpen: true)));
            RemoteEndPoint = remote;
            LocalEndPoint = local;
            ConnectionClosed = _closed.Token;
            ClientCertificate = ssl.RemoteCertificate as X509Certificate2;
            _features.Set<ITlsConnectionFeature>(this);
            _features.Set<ITlsApplicationProtocolFeature>(this);
            _features.Set<IConnectionIdFeature>(this);
            _features.Set(conn);
        }

        public Task Done => _done.Task;

        public override string ConnectionId { get; set; }
        public override IFeatureCollection Features => _features;
        public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();
        public override IDuplexPipe Transport { get; set; }

        public X509Certificate2? ClientCertificate { get; set; }
        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken ct) => Task.FromResult(ClientCertificate);
        public ReadOnlyMemory<byte> ApplicationProtocol => "h2"u8.ToArray();

        public override void Abort(ConnectionAbortedException abortReason)
        {
            try { _socket.Close(0); }
            catch (ObjectDisposedException) { }
            ThreadPool.UnsafeQueueUserWorkItem(static c => ((CancellationTokenSource)c!).Cancel(), _closed);
        }

        public override async ValueTask DisposeAsync()
        {
            await Transport.Input.CompleteAsync().ConfigureAwait(false);
            await Transport.Output.CompleteAsync().ConfigureAwait(false);
            _done.TrySetResult();
        }

        sealed class Pipes(PipeReader input, PipeWriter output) : IDuplexPipe
        {
            public PipeReader Input => input;
            public PipeWriter Output => output;
        }
    }
}

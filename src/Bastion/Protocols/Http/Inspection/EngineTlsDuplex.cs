using System.Net.Security;
using System.Net.Sockets;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// An inspected tunnel's decrypted side for the HTTP engine: the SslStream over an <see cref="EngineStream"/> on the
/// epoll engine. A shutdown or close from elsewhere (a deadline, an abort) is passed on to the duplex under it, whose
/// pending receive a closed socket would never wake.
/// </summary>
/// <param name="ownsInner">Whether disposing closes the duplex under it (an origin's; a client's socket is its connection's).</param>
sealed class EngineTlsDuplex(SslStream ssl, Duplex inner, bool ownsInner) : Duplex
{
    public override Socket? Socket => inner.Socket;

    public override SslStream Tls => ssl;

    public override ValueTask<int> ReceiveAsync(Memory<byte> buffer) => ssl.ReadAsync(buffer);

    public override ValueTask SendAsync(ReadOnlyMemory<byte> data) => ssl.WriteAsync(data);

    public override async ValueTask ShutdownSendAsync()
    {
        try
        {
            await ssl.ShutdownAsync().ConfigureAwait(false);
            inner.Socket?.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (IsIoError(e) || e is NotSupportedException) { }
    }

    // The socket is shut or closed already; the inner duplex's own wake-up is what reaches its waiters.
    protected override void Woken() => inner.ShutdownReceive();

    public override async ValueTask DisposeAsync()
    {
        try { await ssl.DisposeAsync().ConfigureAwait(false); }
        catch (Exception e) when (IsIoError(e)) { }
        if (ownsInner) await inner.DisposeAsync().ConfigureAwait(false);
    }
}

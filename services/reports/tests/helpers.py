"""What the report tests share: a stub per address and waiting for a report to settle."""
import asyncio
import time

from fer.v1 import reports_pb2, reports_pb2_grpc
from ferkit.grpc_client import open_channel
from tests.fixtures.reports import sample_result


class Client:
    """A ReportsService stub with the calls the tests repeat."""

    def __init__(self, address: str) -> None:
        self.channel = open_channel(address)
        self.stub = reports_pb2_grpc.ReportsServiceStub(self.channel)

    async def save(self, owner_id: str, **kwargs) -> reports_pb2.Result:
        return await self.stub.SaveResult(sample_result(owner_id, **kwargs))

    async def request(self, owner_id: str, result_id: str, fmt: str = "pdf") -> reports_pb2.Report:
        return await self.stub.RequestReport(reports_pb2.RequestReportRequest(owner_id=owner_id, result_id=result_id, format=fmt))

    async def get(self, owner_id: str, report_id: str) -> reports_pb2.Report:
        return await self.stub.GetReport(reports_pb2.GetReportRequest(owner_id=owner_id, id=report_id))

    async def file(self, owner_id: str, report_id: str) -> reports_pb2.FileContent:
        return await self.stub.GetReportFile(reports_pb2.GetReportRequest(owner_id=owner_id, id=report_id))

    async def erase(self, owner_id: str) -> reports_pb2.EraseOwnerResponse:
        return await self.stub.EraseOwner(reports_pb2.EraseOwnerRequest(owner_id=owner_id))

    async def wait(self, owner_id: str, report_id: str, statuses=("done", "failed"), timeout_s: float = 30.0) -> reports_pb2.Report:
        deadline = time.monotonic() + timeout_s
        while True:
            report = await self.get(owner_id, report_id)
            if report.status in statuses:
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"report {report_id} is still {report.status} after {timeout_s} s (error: {report.error!r})")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.channel.close()
